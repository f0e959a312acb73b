"""Model configurations the project trains itself."""

FASHION_MNIST_MAE = dict(
    img_size=28, patch_size=4, in_chans=1, embed_dim=128, depth=4, num_heads=4,
    decoder_embed_dim=64, decoder_depth=2, decoder_num_heads=4,
)
