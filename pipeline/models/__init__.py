"""Model definitions: `gan` and `dm` (one folder per generator family, each the code its DVC training stages
depend on), the GAN-inversion encoder, ResNet backbones, checkpoint I/O."""
