"""Model configurations the project trains itself."""

FASHION_MNIST_MAE = dict(
    img_size=28, patch_size=4, in_chans=1, embed_dim=128, depth=4, num_heads=4,
    decoder_embed_dim=64, decoder_depth=2, decoder_num_heads=4,
)

FASHION_MNIST_MAGE = dict(
    img_size=28, embed_dim=128, depth=4, num_heads=4,
    decoder_embed_dim=128, decoder_depth=2, decoder_num_heads=4,
    tokenizer=dict(in_chans=1, ch=32, ch_mult=[1, 2, 2], num_res_blocks=1, z_channels=32,
                   n_embed=256, norm_groups=8),
)

FASHION_MNIST_PALETTE = dict(
    image_size=28, in_channel=2, out_channel=1, inner_channel=32, channel_mults=[1, 2, 2], res_blocks=2,
    attn_res=[4], num_head_channels=32, dropout=0.0, norm_groups=8,
    beta_schedule={"train": {"schedule": "linear", "n_timestep": 1000, "linear_start": 1e-4, "linear_end": 0.02}},
)
