# Pass: each boot prints every diskbench figure (no FAILED), powers off and
# its DM exits 0. The figures are printed as BENCH lines, never checked.
IMG=/var/lib/xen/images
truncate -s 64M $IMG/bench-raw.img
qemu-img create -q -f qcow2 $IMG/bench.qcow2 64M
tb_guest_kernel
for boot in pv ide; do
    case $boot in
    pv) devs=xvda,xvdb,xvdc ;;
    ide) devs=sdb,sdc ;;
    esac
    tb_guest_disk $IMG/boot.img 64 "TBJOB mode=iobench dev=${devs%%,*} devs=$devs start_mb=33 mb=16 ops=2000"
    tb_create $boot.cfg
    domid=$(tb_domid iobench)
    pid=$(tb_dm_pid "$domid")
    tb_wait_console "\(d$domid\) .*GUEST: job:" 600
    cpu0=$(tb_proc_cpu "$pid"); t0=$(tb_now); idle0=$(awk '/^cpu /{print $5}' /proc/stat)
    tb_wait_console "\(d$domid\) .*GUEST: BENCH end" 900
    cpu1=$(tb_proc_cpu "$pid"); t1=$(tb_now); idle1=$(awk '/^cpu /{print $5}' /proc/stat)
    # the DM's CPU time and dom0's busy share while the figures ran (dom0
    # has one vCPU; blkback's work is in dom0's kernel, so a busy DM slows it)
    echo "BENCH iobench-cpu dm=$DM_KIND boot=$boot dm_cpu_s=$(awk "BEGIN{printf \"%.2f\", $cpu1-$cpu0}") wall_s=$(awk "BEGIN{printf \"%.1f\", $t1-$t0}") dom0_busy_pct=$(awk "BEGIN{w=$t1-$t0; if (w>0) printf \"%d\", 100-100*($idle1-$idle0)/100/w; else print 0}")"
    tb_wait_console "\(d$domid\) .*GUEST: DONE" 60
    grep -E "\(d$domid\) .*GUEST: (BENCH|found)" "$TB_CONSOLE" | sed 's/^/  console: /'
    tb_check "$boot boot: every figure ran (GUEST: RESULT PASS)" tb_guest_says "$domid" 'RESULT PASS'
    tb_check "$boot boot: guest powered itself off" tb_wait_domain_gone iobench 60
    tb_check "$boot boot: device model exited" tb_wait_dm_exit "$domid" 20
    tb_check "$boot boot: device model exit status 0" [ "$(tb_dm_exit "$domid")" = 0 ]
    sed -n "s/.*(d$domid) .*GUEST: BENCH dev=\([a-z]*\) op=\([a-z]*\) .*MBps=\([0-9.]*\) iops=\([0-9]*\).*/BENCH iobench dm=$DM_KIND boot=$boot dev=\1 op=\2 MBps=\3 iops=\4/p" "$TB_CONSOLE"
done
qemu-img check $IMG/bench.qcow2 | sed 's/^/  qemu-img check: /'
tb_finish
