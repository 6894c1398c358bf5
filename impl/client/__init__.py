"""The client side of the FUSE wire: `FuseClient` (FUSE requests over a vhost-user
front-end), and the back-ends it talks to started as child processes of the caller
(`host_daemon` for pagefs-host, `Virtiofsd` for QEMU's virtiofsd)."""
