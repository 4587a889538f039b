#!/bin/sh
# Cargo's runner for this crate: `qemu-run.sh ELF [--sd IMG] [ARGS...]`.
#
# Boots ELF on QEMU's sifive_u (`-bios none`: every hart starts at 0x8000_0000) with the card
# image IMG as the SD card on SPI2 (`-drive if=sd`), UART0 on standard output, and ARGS as the
# guest's semihosting command line (one `arg=` each; QEMU joins them with spaces, so an
# argument may not contain one: a prompt is given as separate words). `--icount` also runs
# QEMU with `-icount shift=0`, so the guest's instruction counter is exact. The words of
# QEMU_ARGS are appended to QEMU's command line (`QEMU_ARGS="-trace sdcard_*"`). QEMU's exit
# status is the firmware's.
set -euf
if [ $# -lt 1 ]; then
  echo "usage: qemu-run.sh ELF [--sd IMG] [ARGS...]" >&2
  exit 2
fi
elf=$1
shift
config="enable=on,target=native,arg=picogpt"
icount=""
drive=""
while [ $# -gt 0 ]; do
  case $1 in
    --sd)
      if [ $# -lt 2 ]; then
        echo "error: --sd needs a card image"
        exit 2
      fi
      if [ ! -f "$2" ]; then
        echo "error: $2: no such card image (make one: see firmware/README.md)"
        exit 1
      fi
      size=$(wc -c <"$2")
      if [ "$size" -eq 0 ] || [ $((size & (size - 1))) -ne 0 ]; then
        echo "error: $2: $size bytes, but QEMU's SD card needs a power of two" \
          "(truncate -s 64M $2, then format it again)"
        exit 1
      fi
      drive="if=sd,file=$2,format=raw"
      shift 2
      continue
      ;;
    *" "*)
      echo "qemu-run.sh: '$1' contains a space, which the guest's command line cannot carry;" \
        "give a prompt as separate words" >&2
      exit 2
      ;;
    --icount) icount="shift=0" ;;
  esac
  # A comma inside an option value is written twice.
  config="$config,arg=$(printf '%s' "$1" | sed 's/,/,,/g')"
  shift
done
# shellcheck disable=SC2086 # QEMU_ARGS is a list of words.
exec qemu-system-riscv32 -machine sifive_u -bios none \
  -display none -serial stdio -monitor none \
  ${icount:+-icount "$icount"} \
  ${drive:+-drive "$drive"} \
  -semihosting-config "$config" \
  -kernel "$elf" ${QEMU_ARGS:-}
