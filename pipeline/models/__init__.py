"""Model definitions: StyleGAN2-type GANs, encoders, DCGAN, diffusers UNet builders, ResNet backbones."""
