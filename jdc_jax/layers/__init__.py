"""Neural network layers: GDN/IGDN, convolutions (sub-pixel, transposed, masked), residual blocks."""
