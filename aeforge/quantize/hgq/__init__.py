"""Heterogeneous quantization (HGQ-style learned bit widths) and the EBOPs resource cost.

* :mod:`~aeforge.quantize.hgq.quantizers`: fake quantizers with learned fractional bits;
* :mod:`~aeforge.quantize.hgq.ebops`: EBOPs (exact on any exported model, differentiable in training)
  and the beta schedule;
* :mod:`~aeforge.quantize.hgq.econt`: the ECON-T encoder trained with them (``model.quantization: hgq``)
  and its frozen hardware twin.
"""
