#!/bin/sh
# Runs in dom0 once the Xen tools are up (called by /init): runs the
# scenario's dom0.sh under a timeout, cleans up what it left, then prints
# every log over the console as "@@TB@@ <file> <line>" so that run.sh can
# rebuild them on the host, and finally "TESTBED-RESULT ... rc=N".
. /testbed/lib.sh
mkdir -p "$TB_OUT"
: > "$TB_CONSOLE"
xl dmesg > "$TB_OUT/xen-boot.log" 2>&1

# Xen's console ring is finite; drain it into a file for the checks.
( while :; do xl dmesg -c >> "$TB_CONSOLE" 2>/dev/null; sleep 1; done ) &
collector=$!

tb_say "scenario $SCENARIO, device model $(cat /testbed/dm-path) ($DM_KIND), timeout ${SCENARIO_TIMEOUT}s"
cd /testbed/scenario || exit 1
# The scenario is a process group of its own (setsid: this subshell is no
# group leader, so setsid execs in place and its pid is the group's id).
# When the timeout kills the scenario's shell, what it started in the
# background (samplers, a hung xl) still holds tee's input open, and tee
# would wait for them forever, with the report never sent: the group goes
# with it.
( setsid sh -c 'echo $$ > /tmp/scenario.pgid
    exec timeout -s KILL "$1" sh -c ". /testbed/lib.sh
    tb_check \"dom0 syslog receives /dev/log messages\" tb_syslog_has \"testbed: dom0 syslog up\"
    . ./dom0.sh"' scenario "$SCENARIO_TIMEOUT"
  rc=$?
  [ $rc = 137 ] && kill -KILL -- "-$(cat /tmp/scenario.pgid)" 2>/dev/null
  echo $rc > "$TB_OUT/rc" ) 2>&1 | tee "$TB_OUT/dom0-script.log"
rc=$(cat "$TB_OUT/rc" 2>/dev/null || echo 99)
[ "$rc" = 137 ] && tb_say "scenario KILLED after ${SCENARIO_TIMEOUT}s"

{ echo "== xl list"; xl list; echo "== ps"; ps; } > "$TB_OUT/leftovers-before-cleanup.log" 2>&1
for d in $(xl list 2>/dev/null | awk 'NR > 2 { print $1 }'); do
    xl destroy "$d" >> "$TB_OUT/leftovers-before-cleanup.log" 2>&1
done
sleep 1
kill "$collector" 2>/dev/null
xl dmesg -c >> "$TB_CONSOLE" 2>/dev/null

cp /var/log/messages "$TB_OUT/syslog.log" 2>/dev/null
for f in /var/log/xen/*.log /var/log/xen/console/*.log; do
    [ -f "$f" ] && cp "$f" "$TB_OUT/xen-$(basename "$f")"
done

# Line-prefixed text rather than an archive: a line mangled by Xen's own
# console output costs that line only.
echo "@@TB-DUMP-BEGIN@@"
for f in "$TB_OUT"/*; do
    [ -f "$f" ] || continue
    # the host has the Xen console already, straight from the serial port
    case $f in */xen-console.log) continue ;; esac
    name=$(basename "$f")
    sed "s|^|@@TB@@ $name |" "$f"
done
echo "@@TB-DUMP-END@@"
echo "TESTBED-RESULT scenario=$SCENARIO rc=$rc"
