"""The private descriptor pool of the generated Substrait modules (see proto/compile.py)."""

from google.protobuf import any_pb2, empty_pb2
from google.protobuf import descriptor_pool as _descriptor_pool

POOL = _descriptor_pool.DescriptorPool()
for _well_known in (any_pb2, empty_pb2):
    POOL.AddSerializedFile(_well_known.DESCRIPTOR.serialized_pb)
