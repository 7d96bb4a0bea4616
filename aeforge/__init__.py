"""aeforge: quantization-aware trained autoencoders to bit-exact hardware and edge devices."""

__version__ = "0.1.0"
