#!/bin/busybox sh
# /init of pagefs's test guest: busybox, the modules a share needs, then the agent for ever.
/bin/busybox --install -s /bin
mkdir -p /proc /sys /dev /tmp /mnt /mnt2
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp
while read -r module; do
  insmod "/lib/modules/$module" || echo "pagefs-init: insmod $module failed"
done < /etc/pagefs-modules
port=
for p in /sys/class/virtio-ports/*; do
  [ "$(cat "$p/name" 2>/dev/null)" = pagefs.agent ] && port=/dev/${p##*/}
done
if [ -z "$port" ]; then  # booted by hand: a shell on the console instead of the agent
  echo "pagefs-init: no virtio-serial port named pagefs.agent; here is a shell"
  exec setsid cttyhack sh
fi
echo "pagefs-init: agent on $port"
while true; do
  /sbin/pagefs-agent "$port"
  sleep 1
done
