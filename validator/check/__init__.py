"""The configuration matrix (spec/matrix.toml) and the guard ablation over it."""
