# Pass: both disks are found on their channels, every phase's dd succeeds
# and its read-back verifies by md5 (GUEST: RESULT PASS), the guest's
# pattern is in both image files, no ATA error on the console, the guest
# powers itself off and the DM exits 0. The BENCH lines are figures only.
IMG=/var/lib/xen/images
tb_guest_disk $IMG/boot.img 80 "TBJOB mode=bench devs=sda,sdc mb=32 start_mb=33"
truncate -s 80M $IMG/second.img
tb_create guest.cfg
domid=$(tb_domid two-disk)
pid=$(tb_dm_pid "$domid")
tb_wait_console "\(d$domid\) .*GUEST: init running" 1200
boot_cpu=$(tb_proc_cpu "$pid")
tb_wait_console "\(d$domid\) .*GUEST: BENCH begin" 120
cpu0=$(tb_proc_cpu "$pid")
tb_wait_console "\(d$domid\) .*GUEST: (BENCH end|DONE)" 600
cpu1=$(tb_proc_cpu "$pid")
hwm=$(sed -n 's/^VmHWM:[[:space:]]*//p' "/proc/$pid/status" 2>/dev/null)
tb_wait_console "\(d$domid\) .*GUEST: DONE" 60
tb_linux_milestones
tb_check "guest found both disks (ata1.00 and ata2.00)" tb_guest_says "$domid" 'BENCH begin: disks [a-z]+ [a-z]+,'
tb_check "every phase succeeded and verified (GUEST: RESULT PASS)" tb_guest_says "$domid" 'RESULT PASS'
tb_check "no ATA errors on the guest console" tb_console_lacks 'failed command|exception Emask|I/O error'
pattern=$(dd if=$IMG/boot.img bs=1M skip=33 count=32 2>/dev/null | md5sum | cut -d' ' -f1)
tb_say "pattern in boot.img: $pattern, in second.img: $(tb_region_md5 $IMG/second.img 33 32)"
tb_check "the guest's blocks are in both image files" [ "$pattern" = "$(tb_region_md5 $IMG/second.img 33 32)" ]
tb_check "the pattern is not zeros" [ "$pattern" != "$(dd if=/dev/zero bs=1M count=32 2>/dev/null | md5sum | cut -d' ' -f1)" ]
# figures: MiB moved between BENCH begin and end = 2 x (1 + 2) x 32
moved=192
grep -E "\(d$domid\) .*GUEST: BENCH" "$TB_CONSOLE" | sed "s/.*GUEST: BENCH /BENCH guest /"
echo "BENCH dm ($DM_KIND) cpu_boot_s=$boot_cpu (to the guest's init: SeaBIOS INT13 PIO + kernel)"
echo "BENCH dm ($DM_KIND) cpu_bench_s=$(awk "BEGIN{print $cpu1-$cpu0}") for $moved MiB, cpu_s_per_GiB=$(awk "BEGIN{printf \"%.2f\", ($cpu1-$cpu0)*1024/$moved}")"
echo "BENCH dm ($DM_KIND) VmHWM=$hwm"
tb_check "guest powered itself off (domain gone within 60 s)" tb_wait_domain_gone two-disk 60
tb_check "device model exited after the poweroff" tb_wait_dm_exit "$domid" 20
tb_check "device model exit status 0" [ "$(tb_dm_exit "$domid")" = 0 ]
tail -5 /var/log/xen/qemu-dm-two-disk.log 2>/dev/null
tb_finish
