"""SETUPMAPPING, REMOVEMAPPING, LOAD and STORE: the DAX window's rules and edge cases.

The small geometry: 16-byte pages, 32-byte ranges, a 3-range (96-byte) window."""

from pagefs.spec import FAULT, Err, Errno, Ok
from pagefs.spec.datatypes import O_RDONLY, O_WRONLY, OFF_MAX

DATA = bytes(range(65, 85))  # 20 bytes: one full page and 4 bytes of the next


def test_load_returns_the_hosts_bytes_and_sees_host_writes_at_once(spec) -> None:
    s = spec()
    s.file(b"f", DATA)
    s.mapped(0, b"f", writable=False, flags=O_RDONLY)
    assert s.ok("LOAD", 0, 0, 20) == DATA
    s.ok("host.write", b"f", 2, b"xy")
    assert s.ok("LOAD", 0, 0, 4) == b"ABxy"  # COH-READ


def test_tail_of_last_partial_page_reads_as_zero(spec) -> None:
    s = spec()
    s.file(b"f", DATA)
    s.mapped(0, b"f", writable=False, flags=O_RDONLY)
    assert s.ok("LOAD", 0, 16, 16) == DATA[16:] + bytes(12)


def test_load_and_store_of_a_page_wholly_beyond_eof_fault(spec) -> None:
    s = spec()
    s.file(b"f", DATA)
    s.mapped(0, b"f")
    s.fault("LOAD", 0, 32, 1)  # the range maps file offsets 0..31: page 2 is past it
    s.mapped(0, b"f", foffset=32, moffset=32)  # a mapping wholly beyond end of file
    s.fault("LOAD", 0, 32, 1)
    s.fault("STORE", 0, 33, b"z")
    assert s.ok("LOAD", 0, 0, 4) == DATA[:4]  # other accesses are unaffected


def test_host_truncation_makes_mapped_pages_fault_for_that_access_only(spec) -> None:
    s = spec()
    s.file(b"f", DATA)
    s.mapped(0, b"f", writable=False, flags=O_RDONLY)
    s.mapped(1, b"f", writable=False, flags=O_RDONLY)
    s.ok("host.truncate", b"f", 10)
    s.fault("LOAD", 0, 16, 1)  # page 1 is now wholly beyond end of file
    assert s.ok("LOAD", 0, 0, 16) == DATA[:10] + bytes(6)
    assert s.ok("LOAD", 1, 0, 2) == DATA[:2]  # the other guest goes on


def test_truncate_then_extend_reads_zeros_not_old_bytes(spec) -> None:
    s = spec()
    s.file(b"f", DATA)
    s.mapped(0, b"f", writable=False, flags=O_RDONLY)
    s.ok("host.truncate", b"f", 3)
    s.ok("host.truncate", b"f", 20)
    assert s.ok("LOAD", 0, 0, 20) == DATA[:3] + bytes(17)
    assert s.ok("host.read", b"f", 0, 20) == DATA[:3] + bytes(17)


def test_store_is_the_hosts_data_at_once(spec) -> None:
    s = spec()
    s.file(b"f", DATA)
    s.mapped(0, b"f")
    s.ok("STORE", 0, 1, b"xy")
    assert s.ok("host.read", b"f", 0, 4) == b"Axy" + DATA[3:4]  # COH-WRITE, no msync
    assert s.state.inodes[2].size == 20  # a store never extends the file


def test_two_guests_mapping_one_range_see_each_others_stores(spec) -> None:
    s = spec()
    s.file(b"f", DATA)
    s.mapped(0, b"f", moffset=0)
    s.mapped(1, b"f", moffset=64)
    s.ok("STORE", 0, 5, b"!!")
    assert s.ok("LOAD", 1, 64 + 5, 2) == b"!!"  # COH-PEER
    s.ok("STORE", 1, 64, b"?")
    assert s.ok("LOAD", 0, 0, 1) == b"?"


def test_store_into_the_tail_never_becomes_file_data(spec) -> None:
    s = spec()
    s.file(b"f", DATA)
    s.mapped(0, b"f")
    s.ok("STORE", 0, 20, b"tail")
    assert s.ok("host.read", b"f", 0, 99) == DATA
    # the page still holds the bytes, unless the host evicted it: both are allowed
    assert set(s.results("LOAD", 0, 20, 4)) == {Ok(b"tail"), Ok(bytes(4))}
    s.ok("host.truncate", b"f", 24)  # extension: zeros, never the stored tail
    assert s.ok("host.read", b"f", 20, 4) == bytes(4)


def test_store_that_faults_midway_stored_nothing_or_the_pages_before(spec) -> None:
    s = spec()
    s.file(b"f", DATA)
    s.mapped(0, b"f")
    results = s.outcomes("STORE", 0, 14, b"123456789012345678901")  # page 2 faults
    assert {o.result for o in results} == {FAULT}
    data = {o.state.inodes[2].data for o in results}
    assert data == {DATA, DATA[:14] + b"123456"}  # pages 0 and 1 stored, page 2 faulted


def test_store_to_a_read_only_mapping_faults(spec) -> None:
    s = spec()
    s.file(b"f", DATA)
    s.mapped(0, b"f", writable=False)
    s.fault("STORE", 0, 0, b"x")
    assert s.ok("host.read", b"f", 0, 1) == b"A"


def test_unmapped_and_out_of_window_accesses_fault(spec) -> None:
    s = spec()
    s.fault("LOAD", 0, 0, 1)
    s.fault("LOAD", 0, 96, 1)
    s.fault("LOAD", 0, -1, 1)
    s.fault("STORE", 0, 0, b"x")
    assert s.ok("LOAD", 0, 0, 0) == b""


def test_writable_mapping_through_a_read_only_handle_is_eacces(spec) -> None:
    s = spec()
    s.file(b"f", DATA)
    fh = s.open(0, b"f", O_RDONLY)
    assert s.err("SETUPMAPPING", 0, fh, 0, 32, True, 0) == {Errno.EACCES}  # ACCESS-MODE
    s.ok("SETUPMAPPING", 0, fh, 0, 32, False, 0)


def test_misaligned_or_out_of_window_mapping_is_einval(spec) -> None:
    s = spec()
    s.file(b"f", DATA)
    fh = s.open(0, b"f")
    for foffset, length, moffset in ((8, 32, 0), (0, 32, 16), (0, 16, 0), (0, 0, 0),
                                     (0, 32, 96), (0, 64, 64), (0, 32, -32), (-16, 32, 0)):
        assert s.err("SETUPMAPPING", 0, fh, foffset, length, True, moffset) == {Errno.EINVAL}
    assert s.err("REMOVEMAPPING", 0, 16, 32) == {Errno.EINVAL}
    assert s.err("REMOVEMAPPING", 0, 64, 64) == {Errno.EINVAL}


def test_mapping_needs_a_live_file_handle(spec) -> None:
    s = spec()
    s.file(b"f", DATA)
    fh = s.open(0, b"f")
    assert s.err("SETUPMAPPING", 0, fh + 1, 0, 32, True, 0) == {Errno.EBADF}
    assert s.err("SETUPMAPPING", 1, fh, 0, 32, True, 0) == {Errno.EBADF}  # not guest 1's
    dh = s.ok("OPENDIR", 0, 1)
    assert s.err("SETUPMAPPING", 0, dh, 0, 32, False, 0) == {Errno.EBADF}


def test_a_mapping_outlives_release(spec) -> None:
    s = spec()
    s.file(b"f", DATA)
    fh = s.mapped(0, b"f")
    s.ok("RELEASE", 0, fh)
    assert s.ok("LOAD", 0, 0, 2) == DATA[:2]  # LIFETIME
    s.ok("STORE", 0, 0, b"Z")
    assert s.ok("host.read", b"f", 0, 1) == b"Z"


def test_an_unlinked_but_mapped_file_keeps_its_data(spec) -> None:
    s = spec()
    s.file(b"f", DATA)
    fh = s.mapped(0, b"f")
    s.ok("RELEASE", 0, fh)
    s.ok("FORGET", 0, 2, 1)
    s.ok("host.unlink", b"f")
    assert 2 in s.state.inodes
    assert s.ok("LOAD", 0, 0, 20) == DATA
    s.ok("REMOVEMAPPING", 0, 0, 32)
    assert 2 not in s.state.inodes  # the last holder gone: freed for good
    s.file(b"g", b"other")
    assert s.state.next_ino == 4  # and its number is never handed out again


def test_removemapping_frees_ranges_and_a_free_range_may_be_einval(spec) -> None:
    s = spec()
    s.file(b"f", DATA)
    s.mapped(0, b"f", moffset=32)
    s.mapped(0, b"f", moffset=64)
    s.ok("REMOVEMAPPING", 0, 32, 64)
    s.fault("LOAD", 0, 32, 1)
    results = s.results("REMOVEMAPPING", 0, 0, 96)  # servers differ on free ranges
    assert set(results) == {Ok(None), Err(Errno.EINVAL)}


def test_setupmapping_replaces_what_a_range_mapped(spec) -> None:
    s = spec()
    s.file(b"f", DATA)
    s.file(b"g", b"gggg")
    s.mapped(0, b"f")
    s.mapped(0, b"g")
    assert s.ok("LOAD", 0, 0, 4) == b"gggg"


def test_any_mapping_needs_read_access_and_only_regular_files_map(spec) -> None:
    s = spec()
    s.file(b"f", DATA)
    s.ok("host.mkdir", b"d", 0o755)
    wo = s.open(0, b"f", O_WRONLY)
    assert s.err("SETUPMAPPING", 0, wo, 0, 32, False, 0) == {Errno.EACCES}  # as mmap(2)
    assert s.err("SETUPMAPPING", 0, wo, 0, 32, True, 0) == {Errno.EACCES}
    directory = s.lookup(0, b"d")
    opened = [o for o in s.outcomes("OPEN", 0, directory, O_RDONLY) if o.result != Err(
        Errno.EISDIR)]
    s.state = opened[0].state
    dir_fh = opened[0].result.value
    assert s.err("SETUPMAPPING", 0, dir_fh, 0, 32, False, 0) == {Errno.ENODEV, Errno.EINVAL}


def test_mapping_past_the_largest_file_offset_is_eoverflow(spec) -> None:
    s = spec()
    s.file(b"f", DATA)
    fh = s.open(0, b"f")
    top = OFF_MAX - OFF_MAX % 16 - 16  # page-aligned, one range reaches past OFF_MAX
    assert s.err("SETUPMAPPING", 0, fh, top, 32, False, 0) == {Errno.EOVERFLOW, Errno.EINVAL}


def test_racing_load_is_per_byte_old_or_new() -> None:
    from pagefs.spec.memory import racing_load

    assert racing_load(b"ab", b"cd", b"ad") and racing_load(b"ab", b"cd", b"cb")
    assert not racing_load(b"ab", b"cd", b"xd")  # a byte nobody wrote
    assert not racing_load(b"ab", b"cd", None)  # no fault while the pages stay
    assert racing_load(b"ab", None, None) and racing_load(b"ab", None, b"ab")
    assert not racing_load(b"ab", None, b"\0\0")  # a zapped page is never read as zeros
