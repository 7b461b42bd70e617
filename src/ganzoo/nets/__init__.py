"""Plain nn.Modules (no Lightning): generators map a latent batch to samples, discriminators map
samples to one raw score (logit) per sample."""
