"""What a trial measures besides success: perceptibility and the feature-space scale."""
