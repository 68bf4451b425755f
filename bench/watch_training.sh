#!/bin/bash
# Watches a long training run once a minute, to tell a slowing process from a busy machine
# (issue 20: logged step rates fall over hours-long CPU runs).
#
#   bench/watch_training.sh PATTERN CONSOLE_LOG [SECONDS] > watch.log
#
# PATTERN picks the training process (the oldest `pgrep -f` match); CONSOLE_LOG is the file
# its console goes to.
# One line per interval: unix time; /proc/stat's cpu line (jiffies: user nice system idle
# iowait irq softirq steal guest guest_nice; steal = time the hypervisor gave elsewhere);
# the process's RSS, minor faults, user and system ticks; the last progress step logged.
set -u
pattern=${1:?usage: bench/watch_training.sh PATTERN CONSOLE_LOG [SECONDS]}
console=${2:?usage: bench/watch_training.sh PATTERN CONSOLE_LOG [SECONDS]}
every=${3:-60}
while true; do
  pid=$(pgrep -o -f "$pattern")  # the oldest match: the run, not a later namesake
  rss=- faults=-
  if [ -n "$pid" ] && [ -r "/proc/$pid/stat" ]; then
    rss=$(awk '/VmRSS/{print $2}' "/proc/$pid/status")
    faults=$(awk '{print $10, $14, $15}' "/proc/$pid/stat")
  fi
  step=$(tail -c 400 "$console" 2>/dev/null | grep -o '\[ *[0-9]*/[0-9]*' | tail -1 | tr -d '[ ')
  echo "$(date +%s) $(head -1 /proc/stat) | rss_kb=$rss | minflt_utime_stime=$faults | step=$step"
  sleep "$every"
done
