"""pagefs-mount: a FUSE file system on /dev/fuse serving any virtio-fs back-end.

The kernel's requests are decoded with the project's codec and relayed over the
project's vhost-user front-end; the replies go back the same way. Where the kernel
offers FUSE_PASSTHROUGH and the back-end donates host fds (SETUPMAPPING), an open file
is backed by the host file itself, so reads, writes and mmap run on the host's pages.

    device.py     /dev/fuse, mount(2), umount2(2), the backing-file ioctls
    options.py    the command line's mount options
    negotiate.py  the INIT reply: what the kernel offers against what we need
    donation.py   host fds from the back-end's SETUPMAPPING donations
    relay.py      one request: decode, forward (or pass through), reply
    server.py     the request loop, its workers, and unmounting
    cli.py        the pagefs-mount command
"""
