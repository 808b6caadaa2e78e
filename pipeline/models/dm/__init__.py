"""The demo diffusion models' parts: diffusers UNet and autoencoder builders, the autoencoder's patch
discriminator, and the DDIM scheduler pair shared by sampling and DDIM inversion. The DM `train_generator`
stages depend on this folder and not on `pipeline.models.gan`."""
