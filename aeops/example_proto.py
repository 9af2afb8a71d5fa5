"""``tf.train.Example`` message classes without importing TensorFlow.

The descriptors below are TensorFlow's ``feature.proto`` and ``example.proto`` (proto3), built in a
private descriptor pool: the wire format is identical, so the bytes interoperate with
``tf.io.parse_single_example``, but reading or writing records costs no TensorFlow import (three
seconds, and C++ start-up chatter on stderr) in commands and Beam stages that need no model.
"""

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_F = descriptor_pb2.FieldDescriptorProto
_PACKAGE = "aeops.tfexample"


def _field(name, number, kind, label=_F.LABEL_OPTIONAL, type_name=None, oneof=None):
    field = _F(name=name, number=number, type=kind, label=label)
    if type_name:
        field.type_name = f".{_PACKAGE}.{type_name}"
    if oneof is not None:
        field.oneof_index = oneof
    return field


def _list(name, kind):
    return descriptor_pb2.DescriptorProto(name=name, field=[_field("value", 1, kind, _F.LABEL_REPEATED)])


def _map(name, entry, value_type):
    """A ``map<string, value_type>`` field named ``name`` with its nested entry type."""
    entry_type = descriptor_pb2.DescriptorProto(
        name=entry,
        field=[_field("key", 1, _F.TYPE_STRING), _field("value", 2, _F.TYPE_MESSAGE, type_name=value_type)],
        options=descriptor_pb2.MessageOptions(map_entry=True),
    )
    return entry_type, _F(
        name=name, number=1, type=_F.TYPE_MESSAGE, label=_F.LABEL_REPEATED, type_name=f".{_PACKAGE}.{{}}.{entry}"
    )


def _message(name, map_name, entry, value_type):
    entry_type, field = _map(map_name, entry, value_type)
    field.type_name = field.type_name.format(name)
    return descriptor_pb2.DescriptorProto(name=name, field=[field], nested_type=[entry_type])


def _build():
    proto = descriptor_pb2.FileDescriptorProto(name="aeops/tfexample.proto", package=_PACKAGE, syntax="proto3")
    proto.message_type.extend(
        [
            _list("BytesList", _F.TYPE_BYTES),
            _list("FloatList", _F.TYPE_FLOAT),
            _list("Int64List", _F.TYPE_INT64),
            descriptor_pb2.DescriptorProto(
                name="Feature",
                field=[
                    _field("bytes_list", 1, _F.TYPE_MESSAGE, type_name="BytesList", oneof=0),
                    _field("float_list", 2, _F.TYPE_MESSAGE, type_name="FloatList", oneof=0),
                    _field("int64_list", 3, _F.TYPE_MESSAGE, type_name="Int64List", oneof=0),
                ],
                oneof_decl=[descriptor_pb2.OneofDescriptorProto(name="kind")],
            ),
            _message("Features", "feature", "FeatureEntry", "Feature"),
            descriptor_pb2.DescriptorProto(
                name="Example", field=[_field("features", 1, _F.TYPE_MESSAGE, type_name="Features")]
            ),
        ]
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return {
        name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{_PACKAGE}.{name}"))
        for name in ("BytesList", "FloatList", "Int64List", "Feature", "Features", "Example")
    }


_CLASSES = _build()
BytesList = _CLASSES["BytesList"]
FloatList = _CLASSES["FloatList"]
Int64List = _CLASSES["Int64List"]
Feature = _CLASSES["Feature"]
Features = _CLASSES["Features"]
Example = _CLASSES["Example"]
