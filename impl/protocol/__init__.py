"""The FUSE wire codec: bytes <-> typed messages, and virtio-fs device facts. No I/O.

See docs/ARCHITECTURE.md ("Protocol") for the API in brief.
"""

from .codec import (
    LAYOUTS,
    Reply,
    ReplyBody,
    Request,
    RequestBody,
    decode_reply,
    decode_request,
    decode_request_values,
    encode_attr_reply,
    encode_entry_reply,
    encode_error,
    encode_reply,
    encode_request,
    expects_reply,
)
from .constants import InitFlag, Opcode, OpenReplyFlag, SetattrValid
from .errors import ProtocolError
from .extra_requests import (
    FallocateIn,
    GetxattrIn,
    LinkIn,
    ListxattrIn,
    MknodIn,
    SetxattrIn,
    SyncfsIn,
    XattrSizeOut,
)
from .replies import (
    Attr,
    AttrOut,
    CreateOut,
    Data,
    Dirent,
    Dirents,
    EntryOut,
    InitOut,
    OpenOut,
    StatfsOut,
    WriteOut,
    dirent_size,
)
from .requests import (
    EMPTY,
    BatchForgetIn,
    CreateIn,
    Empty,
    FlushIn,
    ForgetIn,
    ForgetOne,
    FsyncIn,
    GetattrIn,
    InitIn,
    InterruptIn,
    MkdirIn,
    Name,
    OpenIn,
    ReadIn,
    ReleaseIn,
    RemovemappingIn,
    RemovemappingOne,
    Rename2In,
    RenameIn,
    SetattrIn,
    SetupmappingIn,
    SymlinkIn,
    WriteIn,
)

__all__ = [
    "FallocateIn", "GetxattrIn", "LinkIn", "ListxattrIn", "MknodIn", "SetxattrIn", "SyncfsIn",
    "XattrSizeOut",
    "EMPTY", "LAYOUTS", "Attr", "AttrOut", "BatchForgetIn", "CreateIn", "CreateOut", "Data",
    "Dirent", "Dirents", "Empty", "EntryOut", "FlushIn", "ForgetIn", "ForgetOne", "FsyncIn",
    "GetattrIn", "InitFlag", "InitIn", "InitOut", "InterruptIn", "MkdirIn", "Name", "OpenIn",
    "OpenOut", "OpenReplyFlag", "Opcode", "ProtocolError", "ReadIn", "ReleaseIn",
    "RemovemappingIn", "RemovemappingOne", "Rename2In", "RenameIn", "Reply", "ReplyBody",
    "Request", "RequestBody", "SetattrIn", "SetattrValid", "SetupmappingIn", "StatfsOut",
    "SymlinkIn", "WriteIn", "WriteOut", "decode_reply", "decode_request", "decode_request_values",
    "dirent_size", "encode_attr_reply", "encode_entry_reply", "encode_error", "encode_reply",
    "encode_request", "expects_reply",
]  # fmt: skip
