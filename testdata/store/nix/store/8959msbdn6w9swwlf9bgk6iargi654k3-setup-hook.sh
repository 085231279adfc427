export NIX_CROSS=1
