"""A victim's evaluator: the clean model's view of images and the scoring of classifiers.

It gives f(x) of the clean model (the space in which poisons are crafted and defenses look), the
clean victim's class probabilities (for target choice) and any classifier's predictions on the
accuracy set (clean accuracy before, in the control and after poisoning). A classifier here is a
module ``head(features(x))`` with its head as ``.head`` (``outcome.Classifier``, or a
``FeatureClassifier``).
"""

from __future__ import annotations

import torch
from torch import nn

from frogs.data.poisoned_set import PoisonedSet
from frogs.models.pretrain import CleanModel
from frogs.models.train import predict_in_batches
from frogs.store.identity import cache_key
from frogs.victims.data_view import VictimData


def model_identity(clean: CleanModel) -> str:
    """What names the clean model in the keys of caches derived from it (features, control): its
    checkpoint or cache entry's SHA-256, else a fingerprint of its weights."""
    if clean.sha256:
        return clean.sha256
    return cache_key(weights=dict(clean.model.state_dict()))


def set_features(
    clean_training_features: torch.Tensor, feature_fn, training: PoisonedSet
) -> torch.Tensor:
    """The clean model's features of every row of a full poisoned set: its clean rows' (computed
    once per job) and its poisons' (``feature_fn``)."""
    clean = clean_training_features
    if training.clean_rows is not None:
        clean = clean[training.clean_rows.to(clean.device)]
    with torch.no_grad():
        poisons = feature_fn(training.inputs[len(clean) :])
    return torch.cat([clean, poisons.flatten(1)])


def freeze(model: nn.Module) -> nn.Module:
    """``model`` with every parameter frozen: the clean model is never trained, only read (its
    features and their gradients with respect to the input)."""
    for p in model.parameters():
        p.requires_grad_(False)
    return model


class Evaluator:
    """The clean model (frozen by the victim's builder, ``freeze``) beside the victim's data
    view; subclasses say how the clean victim classifies and how a classifier is scored on the
    accuracy set."""

    def __init__(
        self, clean: CleanModel, view: VictimData, test_images: torch.Tensor, device: torch.device
    ) -> None:
        """``test_images``: the dataset's whole test split (targets are drawn from it)."""
        self.clean_model, self.model = clean, clean.model
        self.view, self.test_images, self.device = view, test_images, device
        self._train_features: torch.Tensor | None = None

    def model_identity(self) -> str:
        """``model_identity`` of the clean model."""
        return model_identity(self.clean_model)

    def feature_fn(self, x: torch.Tensor) -> torch.Tensor:
        """f(x) of the clean model: the space in which poisons are crafted."""
        return self.model.features(x)

    def clean_training_features(self) -> torch.Tensor:
        """The clean model's features of the clean training images (computed once per job)."""
        if self._train_features is None:
            self._train_features = predict_in_batches(self.feature_fn, self.view.train_x)
        return self._train_features

    def set_features(self, training: PoisonedSet) -> torch.Tensor:
        """The clean model's features of every row of a full poisoned set (what defenses see)."""
        return set_features(self.clean_training_features(), self.feature_fn, training)

    def clean_classifier(self) -> nn.Module:
        """The clean victim before any retraining, mapping images to task logits."""
        raise NotImplementedError

    def clean_probs(self, x: torch.Tensor) -> torch.Tensor:
        """Class probabilities (task order) of the clean victim."""
        with torch.no_grad():
            return torch.softmax(self.clean_classifier()(x), 1)

    def clean_test_probs(self, indices: torch.Tensor) -> torch.Tensor:
        """Clean-victim class probabilities (task order, CPU) of the test images ``indices``."""
        return torch.cat(
            [
                self.clean_probs(self.test_images[chunk].to(self.device)).cpu()
                for chunk in indices.split(512)
            ]
        )

    def clean_head_parameters(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Weight and bias of the clean victim's final layer (task order)."""
        head = self.clean_classifier().head
        return head.weight.detach(), head.bias.detach()

    def test_predictions(self, classifier: nn.Module) -> torch.Tensor:
        """Predicted task rows of ``classifier`` on the accuracy set."""
        return predict_in_batches(classifier, self.view.test_x).argmax(1)
