"""CBNet-style converting autoencoders (``model.family: converter``).

A heavy classifier with an early exit labels training images easy or hard; a converting
autoencoder learns to map every image to an easy image of its class; a light classifier runs on
the converted image. Converter + light classifier are one quantized model (the run's hardware model:
export, deploy, bench and verify take it like any other); the heavy and light classifiers stay in the
run as baselines. Modules: :mod:`~aeforge.converter.config` (YAML), :mod:`~aeforge.converter.data`,
:mod:`~aeforge.converter.models`, :mod:`~aeforge.converter.train`, :mod:`~aeforge.converter.compare`
(export and benchmarks against the baselines). Nothing heavy is imported here.
"""
