"""The small rules the operations compose (spec/rules.py)."""

from hypothesis import given
from hypothesis import strategies as st

from pagefs.spec.datatypes import Access, Errno
from pagefs.spec.rules import (
    R_OK,
    W_OK,
    X_OK,
    access_of,
    chmod_mode,
    is_dot,
    killed_by_write,
    mapping_request_valid,
    name_errors,
    new_modes,
    new_owner,
    page_beyond_eof,
    page_start,
    permitted,
    ranges_of,
    read_bytes,
    resize,
    tail_length,
    write_bytes,
)


def test_name_errors_follow_posix() -> None:
    assert name_errors(b"ok", 8) == frozenset()
    assert name_errors(b"a/b", 8) == {Errno.EINVAL}
    assert name_errors(b"a\0", 8) == {Errno.EINVAL}
    assert name_errors(b"x" * 9, 8) == {Errno.ENAMETOOLONG}
    assert name_errors(b"x" * 8, 8) == frozenset()
    assert name_errors(b"", 8) == {Errno.EINVAL, Errno.ENOENT}
    assert name_errors(b"/" * 9, 8) == {Errno.EINVAL, Errno.ENAMETOOLONG}


def test_dots_are_not_entries() -> None:
    assert is_dot(b".") and is_dot(b"..")
    assert not is_dot(b"...") and not is_dot(b".a")


def test_access_modes_from_open_flags() -> None:
    assert access_of(0) is Access.READ
    assert access_of(1) is Access.WRITE
    assert access_of(2) is Access.READ_WRITE
    assert access_of(3) is None
    assert access_of(0o1002) is Access.READ_WRITE  # O_TRUNC does not change the access
    assert not Access.WRITE.can_read and not Access.READ.can_write


def test_reads_stop_at_end_of_file() -> None:
    assert read_bytes(b"hello", 1, 3) == b"ell"
    assert read_bytes(b"hello", 3, 10) == b"lo"
    assert read_bytes(b"hello", 5, 1) == b""
    assert read_bytes(b"hello", 99, 1) == b""


def test_writes_past_the_end_fill_a_hole_with_zeros() -> None:
    assert write_bytes(b"abc", 1, b"XY") == b"aXY"
    assert write_bytes(b"abc", 2, b"XY") == b"abXY"
    assert write_bytes(b"abc", 5, b"Z") == b"abc\0\0Z"
    assert write_bytes(b"abc", 5, b"") == b"abc"


def test_resize_truncates_and_extends_with_zeros() -> None:
    assert resize(b"abcdef", 2) == b"ab"
    assert resize(b"ab", 4) == b"ab\0\0"
    assert resize(resize(b"abcdef", 2), 6) == b"ab\0\0\0\0"  # truncate then extend


def test_pages_beyond_end_of_file() -> None:
    assert page_start(17, 16) == 16
    assert not page_beyond_eof(0, 1)  # the last partial page is not beyond EOF
    assert page_beyond_eof(16, 16) and page_beyond_eof(0, 0)
    assert tail_length(20, 16) == 12 and tail_length(32, 16) == 0


def test_mapping_requests_cover_whole_ranges_in_the_window() -> None:
    geometry = dict(page_size=16, range_size=32, window_size=96)
    assert mapping_request_valid(16, 32, 32, **geometry)
    assert mapping_request_valid(0, 96, 0, **geometry)
    assert not mapping_request_valid(8, 32, 0, **geometry)  # file offset not page-aligned
    assert not mapping_request_valid(0, 32, 16, **geometry)  # window offset inside a range
    assert not mapping_request_valid(0, 16, 0, **geometry)  # not a whole range
    assert not mapping_request_valid(0, 0, 0, **geometry)
    assert not mapping_request_valid(0, 32, 96, **geometry)  # past the window
    assert not mapping_request_valid(0, 64, 64, **geometry)
    assert not mapping_request_valid(0, 32, -32, **geometry)
    assert list(ranges_of(32, 64, 32)) == [1, 2]


@given(st.binary(max_size=40), st.integers(0, 50), st.binary(max_size=20))
def test_write_then_read_gives_back_what_was_written(data: bytes, offset: int,
                                                      new: bytes) -> None:
    written = write_bytes(data, offset, new)
    assert read_bytes(written, offset, len(new)) == new
    assert written[:min(offset, len(data))] == data[:offset]


@given(st.binary(max_size=40), st.integers(0, 60), st.integers(0, 60))
def test_resize_never_resurrects_old_bytes(data: bytes, down: int, up: int) -> None:
    smaller = resize(data, min(down, len(data)))
    bigger = resize(smaller, max(up, len(smaller)))
    assert bigger[len(smaller):] == bytes(len(bigger) - len(smaller))


# --- OWNERSHIP's rules, each on the cases Linux decides ---

def test_permission_is_the_owners_the_groups_or_the_others_bits() -> None:
    assert permitted(1000, 1000, 1000, 0, 0o600, W_OK)  # owner
    assert not permitted(1000, 1000, 1000, 1000, 0o077, R_OK)  # owner's bits alone count
    assert permitted(1001, 1000, 1000, 1000, 0o060, R_OK | W_OK)  # group
    assert not permitted(1001, 1001, 1000, 1000, 0o770, X_OK)  # others
    assert permitted(0, 0, 1000, 1000, 0o000, R_OK | W_OK)  # root


def test_a_set_gid_directory_gives_its_group_and_passes_set_gid_on() -> None:
    assert new_owner(1000, 1000, 0o2777, 2000) == (1000, 2000)
    assert new_owner(1000, 1000, 0o0777, 2000) == (1000, 1000)
    assert new_modes(1000, 1000, 0o755, 0o022, True, 0o2777, 2000) == {0o2755}
    assert new_modes(1000, 1000, 0o2755, 0, True, 0o777, 0) == {0o755}  # mkdir ignores it


def test_set_gid_is_stripped_from_a_file_of_a_group_not_the_callers() -> None:
    assert new_modes(1000, 1000, 0o2755, 0, False, 0o2777, 2000) == {0o755}
    assert new_modes(1000, 2000, 0o2755, 0, False, 0o2777, 2000) == {0o2755}  # in group
    assert new_modes(0, 0, 0o2755, 0, False, 0o2777, 2000) == {0o2755}  # root
    assert new_modes(1000, 1000, 0o2745, 0, False, 0o2777, 2000) == {0o2745}  # no g+x
    # group-executable judged before or after a umask that removes it: both allowed
    assert new_modes(1000, 1000, 0o2755, 0o077, False, 0o2777, 2000) == {0o2700, 0o700}


def test_a_users_write_clears_set_id_and_roots_does_not() -> None:
    assert killed_by_write(1000, 1000, 1000, 0o6755) == 0o0755
    assert killed_by_write(1000, 1000, 1000, 0o6745) == 0o2745  # in group, no g+x: stays
    assert killed_by_write(1000, 1000, 0, 0o6745) == 0o0745  # not of its group: goes
    assert killed_by_write(0, 0, 1000, 0o6755) == 0o6755


def test_chmod_by_an_owner_outside_the_group_drops_set_gid() -> None:
    assert chmod_mode(1000, 1000, 2000, 0o2755) == 0o0755
    assert chmod_mode(1000, 2000, 2000, 0o2755) == 0o2755
    assert chmod_mode(0, 0, 2000, 0o6755) == 0o6755
