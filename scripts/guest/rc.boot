#!/bin/sh
# The guest's boot: says it is up on the serial console, checks the record stream a previous
# life of this disk wrote (see /sbin/records), and starts the writer when the kernel's command
# line has stratus.writer=1.
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
mount -o remount,rw /
hostname stratus-guest
echo "stratus-guest: up, kernel $(uname -r)"
if [ -f /data/records ]; then
  /sbin/records verify /data/records
fi
# The power button (ACPI) powers the guest off cleanly.
acpid -c /etc/acpi -l /dev/null
echo "stratus-guest: ready"
case " $(cat /proc/cmdline) " in
  *" stratus.writer=1 "*)
    mkdir -p /data
    /sbin/records write /data/records </dev/null >/dev/console 2>&1 &
    ;;
esac
