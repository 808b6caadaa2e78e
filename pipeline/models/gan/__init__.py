"""The demo GANs' networks: StyleGAN2-type and DCGAN-type generators and discriminators, the discriminator's
high-pass view. The GAN `train_generator` stages depend on this folder and not on `pipeline.models.dm`."""
