"""Import a QKeras model (Keras model JSON + HDF5 weights) into aeforge, without TensorFlow.

:func:`load_qkeras` reads the architecture (``model.to_json()``; or the ``model_config`` of a
full-model ``.h5``) and the weights (Keras 2 ``model.save_weights('w.h5')`` layout, or the
``model_weights`` group of ``model.save('m.h5')``) with ``json`` and ``h5py``, and returns an
:class:`ImportedModel`: a :class:`~aeforge.quantize.models.spec.SequentialSpec`, a torch
state_dict whose weights are already quantized exactly as QKeras quantizes them at inference,
what the run card records, and, when the topology is the ECON-T encoder, the matching aeforge
ECON-T configuration. The Brevitas model equals QKeras's ``model.predict`` bit for bit on inputs
that the input type holds exactly (and wherever QKeras's float32 arithmetic is itself exact).

Supported (channels-last only, a linear chain of layers):

==============================================  ===================================================
Keras / QKeras layer                            aeforge
==============================================  ===================================================
``InputLayer`` (or ``batch_input_shape``)       input ``(H, W, C)``, ``(L, C)`` or ``(F,)``
first ``QActivation(quantized_bits)``           the input type; without one: ``ap_fixed<16,6>``
                                                (hls4ml's default) or ``input_type``
``QActivation(quantized_bits)``                 ``quant``
``QActivation(quantized_relu)`` (also           ``relu`` (a float ReLU right before it is merged)
``'quantized_relu(3,1)'`` strings)
float ReLU (``Activation('relu')``, ``ReLU()``,  ``relu`` to the exact unsigned half of its input
``activation='relu'``)                          type (no rounding)
``QDense`` / ``QConv1D`` / ``QConv2D``          ``dense`` / ``conv1d`` / ``conv2d`` (valid/same,
                                                strides); no output quantizer: the exact accumulator
kernel/bias quantizers                          ``quantized_bits`` (alpha 1 or a power of two),
                                                ``quantized_po2``, ``binary``, ``ternary``
``BatchNormalization`` right after a            folded into that layer's weights, then its
QConv/QDense (no activation between),           quantizers, as QKeras's ``QConv2DBatchnorm`` does
``QConv2DBatchnorm``
``MaxPooling1D/2D``, ``AveragePooling1D/2D``    ``maxpool`` / ``avgpool`` (padding 'valid'; average
                                                over power-of-two windows)
``Flatten``                                     ``flatten`` (channels-last order)
trailing ``softmax`` (layer or activation)      host-side post-processing; hardware outputs logits
``Dropout`` and kin, linear activations         ignored (identities at inference)
==============================================  ===================================================

Refused with a :class:`~aeforge.errors.ConfigError` naming the Keras layer and class: other layer
classes (``QBatchNormalization``, plain ``Dense``/``Conv2D``, ...), batch normalization anywhere
else, a softmax that is not last, branches and shared layers, ``channels_first``, dilation,
groups, pooling with 'same' padding, ``quantized_relu_po2`` / ``quantized_po2`` / ``binary`` /
``ternary`` activations (not a uniform grid or not round-and-saturate), kernel quantizers with
``alpha`` None/``"auto"``/``"auto_po2"`` (QKeras's per-channel scales from the weights), non-po2
``alpha``, stochastic rounding, ``qnoise_factor`` != 1, leaky or sigmoid ``quantized_relu``,
kernels or biases without a quantizer. HDF5 problems (missing, extra or mis-shaped weights)
raise :class:`~aeforge.errors.DataError` naming the layer.
"""

from aeforge.quantize.qkeras.econt import EcontImport, match_econt
from aeforge.quantize.qkeras.files import read_keras_weights
from aeforge.quantize.qkeras.model import ImportedModel, apply_postprocess, load_qkeras
from aeforge.quantize.qkeras.translate import DEFAULT_INPUT_TYPE, IGNORED_LAYERS

__all__ = [
    "DEFAULT_INPUT_TYPE",
    "IGNORED_LAYERS",
    "EcontImport",
    "ImportedModel",
    "apply_postprocess",
    "load_qkeras",
    "match_econt",
    "read_keras_weights",
]
