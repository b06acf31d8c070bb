"""Configuration: the settings schemas, Hydra composition, the registries and plugins."""
