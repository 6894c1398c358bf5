"""Real Linux guests for pagefs: a Debian kernel and a busybox initramfs with pagefs's agent,
booted under QEMU against a back-end (pagefs-host, QEMU's virtiofsd, or QEMU's own 9p), so
the conformance suite and the step list judge the whole stack a user deploys.

    image.py     `make vm`: Debian packages into a cache outside the repository, initramfs
    agent.c      the guest agent: file-system calls and mmap in the guest, on request
    agent.py     the host's side of the agent's protocol
    backends.py  the back-ends a guest can boot against
    machine.py   one QEMU process: boot, wait for the agent, mount, always end
"""
