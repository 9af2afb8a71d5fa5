"""aeops: regenerate image datasets held as TFRecord shards, augmented and restored.

Data contract, written once: an image is a ``numpy.ndarray`` of dtype ``uint8`` and shape
``(height, width, 3)``, RGB. Every stage takes and returns that, unless its docstring says otherwise.
The flow runs one way: shard -> record -> image -> variants -> batch -> image -> record -> shard.
"""

__version__ = "0.1.0"
