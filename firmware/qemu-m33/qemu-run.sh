#!/bin/sh
# Cargo's runner for this crate: `qemu-run.sh ELF [ARGS...]`.
#
# Boots ELF on QEMU's mps2-an505 (Cortex-M33) and hands ARGS to the guest as its semihosting
# command line (one `arg=` each; QEMU joins them with spaces, so an argument may not contain
# one: a prompt is given as separate words, which the firmware joins with single spaces). `--icount` also runs QEMU with `-icount shift=0`: one instruction per virtual
# nanosecond, so the firmware's timer counts instructions. QEMU's exit status is the
# firmware's.
set -eu
if [ $# -lt 1 ]; then
  echo "usage: qemu-run.sh ELF [ARGS...]" >&2
  exit 2
fi
elf=$1
shift
config="enable=on,target=native,arg=picogpt"
icount=""
for arg in "$@"; do
  case $arg in
    *" "*)
      echo "qemu-run.sh: '$arg' contains a space, which the guest's command line cannot carry;" \
        "give a prompt as separate words" >&2
      exit 2
      ;;
    --icount) icount="shift=0" ;;
  esac
  # A comma inside an option value is written twice.
  config="$config,arg=$(printf '%s' "$arg" | sed 's/,/,,/g')"
done
exec qemu-system-arm -machine mps2-an505 -cpu cortex-m33 \
  -display none -serial none -monitor none \
  ${icount:+-icount "$icount"} \
  -semihosting-config "$config" \
  -kernel "$elf"
