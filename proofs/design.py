"""The page-sharing design as z3 state: datatypes only, no behaviour.

The design sits below the abstract spec. The host page cache maps (inode, page) to
a frame; a frame has an owner inode, a page index and 4096 bytes. A guest window is
page-granular here: window page ``s`` of guest ``g`` is either free or mapped to
(inode, file page, writable); a 2 MiB range is 512 consecutive window pages with
consecutive file pages. ``pte`` is the guest's resolved entry (the frame its access
reached, like a page-table entry): it is a cache of "the frame the page cache holds
now", and the truncate rule is what keeps it honest.

Every map is a z3 array (Hyperkernel's ``Map`` as uninterpreted functions), updated
functionally with ``Store`` and ``Lambda``. Identifier 0 means "none" in every sort,
so a free slot is simply the value 0. Fields marked *ghost* are history the design
does not need at run time; they let the invariants state two-state properties
(NODEID, HANDLE) as one-state ones.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import z3

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
RANGE_PAGES = (2 << 20) >> PAGE_SHIFT  # a 2 MiB window range, in pages

Guest = z3.BitVecSort(8)
Slot = z3.BitVecSort(16)  # a window page of one guest
Handle = z3.BitVecSort(16)
Nodeid = z3.BitVecSort(16)
Inode = z3.BitVecSort(16)  # an inode's identity (number and generation): never reused
Page = z3.BitVecSort(16)  # a file page index
Offset = z3.BitVecSort(PAGE_SHIFT)  # a byte within a page
Frame = z3.BitVecSort(16)
Byte = z3.BitVecSort(8)
Name = z3.BitVecSort(8)
Size = z3.BitVecSort(16 + PAGE_SHIFT)  # a byte position is Concat(page, offset)
Count = z3.IntSort()

ROOT = 1  # the export root's inode, and its nodeid in every guest
NONE = 0


def val(sort: z3.SortRef, n: int) -> z3.ExprRef:
    """A constant of a bit-vector sort (``NONE`` is ``val(sort, 0)``)."""
    return z3.BitVecVal(n, sort.size())


def position(page: z3.ExprRef, offset: z3.ExprRef) -> z3.ExprRef:
    """The byte position of ``offset`` within file page ``page``."""
    return z3.Concat(page, offset)


def page_start(page: z3.ExprRef) -> z3.ExprRef:
    return z3.Concat(page, val(Offset, 0))


def page_of(pos: z3.ExprRef) -> z3.ExprRef:
    return z3.Extract(Size.size() - 1, PAGE_SHIFT, pos)


def offset_of(pos: z3.ExprRef) -> z3.ExprRef:
    return z3.Extract(PAGE_SHIFT - 1, 0, pos)


@dataclass(frozen=True)
class State:
    """One state of the design: host page cache, namespace, and every guest's tables."""

    # The export (fixed for a run).
    read_only: z3.BoolRef
    window_pages: z3.BitVecRef  # pages in every guest's window, a whole number of ranges
    max_size: z3.BitVecRef  # the largest file size the export supports (the spec's EFBIG)
    # Host inodes (identities below next_ino have been issued; none is ever reissued).
    alive: z3.ArrayRef  # Inode -> Bool
    is_dir: z3.ArrayRef  # Inode -> Bool
    size: z3.ArrayRef  # Inode -> Size (bytes)
    dent: z3.ArrayRef  # (dir Inode, Name) -> Inode
    next_ino: z3.BitVecRef
    # Host page cache and frames.
    pc: z3.ArrayRef  # (Inode, Page) -> Frame
    owner: z3.ArrayRef  # Frame -> Inode (NONE: free)
    fpage: z3.ArrayRef  # Frame -> Page
    fdata: z3.ArrayRef  # (Frame, Offset) -> Byte
    # Per guest: connection and nodeids.
    conn: z3.ArrayRef  # Guest -> Bool
    node_ino: z3.ArrayRef  # (Guest, Nodeid) -> Inode
    ino_node: z3.ArrayRef  # (Guest, Inode) -> Nodeid, the inverse of node_ino
    node_cnt: z3.ArrayRef  # (Guest, Nodeid) -> Int, the lookup count
    node_hist: z3.ArrayRef  # ghost: (Guest, Nodeid) -> the first Inode it ever meant
    next_node: z3.ArrayRef  # Guest -> Nodeid
    # Per guest: open handles.
    fh_ino: z3.ArrayRef  # (Guest, Handle) -> Inode (NONE: not open)
    fh_rd: z3.ArrayRef  # (Guest, Handle) -> Bool, opened for reading
    fh_wr: z3.ArrayRef  # (Guest, Handle) -> Bool, opened for writing
    fh_issued: z3.ArrayRef  # ghost: (Guest, Handle) -> Bool
    fh_released: z3.ArrayRef  # ghost: (Guest, Handle) -> Bool
    next_fh: z3.ArrayRef  # Guest -> Handle
    # Per guest: the DAX window.
    map_ino: z3.ArrayRef  # (Guest, Slot) -> Inode (NONE: free)
    map_page: z3.ArrayRef  # (Guest, Slot) -> Page
    map_wr: z3.ArrayRef  # (Guest, Slot) -> Bool
    map_via_rd: z3.ArrayRef  # ghost: (Guest, Slot) -> Bool, the handle it was made through
    map_via_wr: z3.ArrayRef  # ghost: ... could read, could write
    pte: z3.ArrayRef  # (Guest, Slot) -> Frame (NONE: not resolved yet)


_SORTS: dict[str, tuple[z3.SortRef, ...]] = {
    "read_only": (z3.BoolSort(),),
    "window_pages": (Slot,),
    "max_size": (Size,),
    "alive": (Inode, z3.BoolSort()),
    "is_dir": (Inode, z3.BoolSort()),
    "size": (Inode, Size),
    "dent": (Inode, Name, Inode),
    "next_ino": (Inode,),
    "pc": (Inode, Page, Frame),
    "owner": (Frame, Inode),
    "fpage": (Frame, Page),
    "fdata": (Frame, Offset, Byte),
    "conn": (Guest, z3.BoolSort()),
    "node_ino": (Guest, Nodeid, Inode),
    "ino_node": (Guest, Inode, Nodeid),
    "node_cnt": (Guest, Nodeid, Count),
    "node_hist": (Guest, Nodeid, Inode),
    "next_node": (Guest, Nodeid),
    "fh_ino": (Guest, Handle, Inode),
    "fh_rd": (Guest, Handle, z3.BoolSort()),
    "fh_wr": (Guest, Handle, z3.BoolSort()),
    "fh_issued": (Guest, Handle, z3.BoolSort()),
    "fh_released": (Guest, Handle, z3.BoolSort()),
    "next_fh": (Guest, Handle),
    "map_ino": (Guest, Slot, Inode),
    "map_page": (Guest, Slot, Page),
    "map_wr": (Guest, Slot, z3.BoolSort()),
    "map_via_rd": (Guest, Slot, z3.BoolSort()),
    "map_via_wr": (Guest, Slot, z3.BoolSort()),
    "pte": (Guest, Slot, Frame),
}


def symbolic(prefix: str = "s") -> State:
    """An arbitrary state: every field a fresh z3 constant."""
    made = {}
    for name, sorts in _SORTS.items():
        if len(sorts) == 1:
            made[name] = z3.Const(f"{prefix}.{name}", sorts[0])
        else:
            made[name] = z3.Array(f"{prefix}.{name}", *sorts)
    return State(**made)


def constant(sorts: tuple[z3.SortRef, ...], value: z3.ExprRef) -> z3.ArrayRef:
    """An array of any arity holding ``value`` everywhere."""
    bound = [z3.FreshConst(s, "k") for s in sorts[:-1]]
    return z3.Lambda(bound, value)


MAX_SIZE = 64 << 20  # the spec's default largest file size


def initial(read_only: bool | z3.BoolRef = False,
            window_pages: int | z3.BitVecRef = 8 * RANGE_PAGES,
            max_size: int | z3.BitVecRef = MAX_SIZE) -> State:
    """The spec's initial state: only the empty root directory exists, and every guest
    is connected (past INIT) holding nothing but the root nodeid."""
    made = {}
    for name, sorts in _SORTS.items():
        rng = sorts[-1]
        if rng == z3.BoolSort():
            zero = z3.BoolVal(False)
        elif rng == Count:
            zero = z3.IntVal(0)
        else:
            zero = val(rng, 0)
        made[name] = zero if len(sorts) == 1 else constant(sorts, zero)
    made["read_only"] = z3.BoolVal(read_only) if isinstance(read_only, bool) else read_only
    made["window_pages"] = (val(Slot, window_pages) if isinstance(window_pages, int)
                            else window_pages)
    made["max_size"] = val(Size, max_size) if isinstance(max_size, int) else max_size
    root_i, root_n = val(Inode, ROOT), val(Nodeid, ROOT)
    made["alive"] = z3.Store(made["alive"], root_i, True)
    made["is_dir"] = z3.Store(made["is_dir"], root_i, True)
    made["next_ino"] = val(Inode, ROOT + 1)
    made["conn"] = constant((Guest, z3.BoolSort()), z3.BoolVal(True))
    g, x = z3.FreshConst(Guest, "g"), z3.FreshConst(Nodeid, "n")
    made["node_ino"] = z3.Lambda([g, x], z3.If(x == root_n, root_i, val(Inode, NONE)))
    made["node_hist"] = made["node_ino"]
    made["node_cnt"] = z3.Lambda([g, x], z3.If(x == root_n, z3.IntVal(1), z3.IntVal(0)))
    y = z3.FreshConst(Inode, "i")
    made["ino_node"] = z3.Lambda([g, y], z3.If(y == root_i, root_n, val(Nodeid, NONE)))
    made["next_node"] = constant((Guest, Nodeid), val(Nodeid, ROOT + 1))
    made["next_fh"] = constant((Guest, Handle), val(Handle, 1))
    return State(**made)


def ite(cond: z3.BoolRef, then: State, other: State) -> State:
    """Field-wise ``If(cond, then, other)``: a step that only happens when ``cond``."""
    merged = {}
    for f in fields(State):
        a, b = getattr(then, f.name), getattr(other, f.name)
        merged[f.name] = a if a.eq(b) else z3.If(cond, a, b)
    return State(**merged)


def update(state: State, **changes: z3.ExprRef) -> State:
    return replace(state, **changes)


def field_names() -> tuple[str, ...]:
    return tuple(f.name for f in fields(State))


def simplified(s: State) -> State:
    """Every field simplified: concrete parts fold away (a concrete state becomes small
    concrete terms), so the next step builds on, and each query reads, a small term."""
    return State(**{f.name: z3.simplify(getattr(s, f.name)) for f in fields(State)})
