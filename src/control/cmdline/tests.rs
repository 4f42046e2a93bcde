use super::*;

fn args(line: &str) -> Vec<String> {
    line.split_whitespace().map(str::to_string).collect()
}

fn run(line: &str) -> MachineConfig {
    match parse_args(&args(line)) {
        Ok(Command::Run(config)) => config,
        other => panic!("{line}: {other:?}"),
    }
}

fn error(line: &str) -> String {
    match parse_args(&args(line)) {
        Err(e) => {
            let text = e.to_string();
            assert!(!text.contains('\n'), "multi-line error: {text}");
            text
        }
        Ok(other) => panic!("{line}: accepted as {other:?}"),
    }
}

const QEMU_XEN_417: &str = "-xen-domid 7 -no-shutdown \
  -chardev socket,id=libxl-cmd,path=/var/run/xen/qmp-libxl-7,server=on,wait=off \
  -mon chardev=libxl-cmd,mode=control \
  -chardev socket,id=libxenstat-cmd,path=/var/run/xen/qmp-libxenstat-7,server=on,wait=off \
  -mon chardev=libxenstat-cmd,mode=control \
  -nodefaults -no-user-config -name g1 -vnc none -display none -serial pty -nographic \
  -device cirrus-vga,vgamem_mb=8 -boot order=cda -net none -machine xenfv,suppress-vmdesc=on -m 1016 \
  -drive file=/path/img,if=ide,index=0,media=disk,format=raw,cache=writeback \
  -drive if=none,readonly=on,id=ide-5632,file=/path/cd.iso,format=raw \
  -device ide-cd,id=ide-5632,drive=ide-5632,bus=ide.1,unit=0";

#[test]
fn qemu_xen_417_argv_from_the_fact_sheet() {
    let c = run(QEMU_XEN_417);
    assert_eq!(c.flavour, Flavour::QemuXen);
    assert_eq!(c.domid, Some(7));
    assert_eq!(c.name.as_deref(), Some("g1"));
    assert_eq!(c.ram_mib, 1016);
    assert!(c.xen_platform_device);
    assert!(c.no_shutdown);
    assert!(!c.start_paused);
    assert_eq!(c.boot_order, "cda");
    assert_eq!(c.serial, vec![SerialSpec::Pty]);
    assert_eq!(
        c.qmp,
        vec![
            QmpEndpoint::UnixPath { label: "libxl-cmd".into(), path: "/var/run/xen/qmp-libxl-7".into() },
            QmpEndpoint::UnixPath { label: "libxenstat-cmd".into(), path: "/var/run/xen/qmp-libxenstat-7".into() },
        ]
    );
    assert_eq!(c.drives.len(), 2);
    let hd = &c.drives[0];
    assert_eq!((hd.id.as_str(), hd.slot, hd.cdrom, hd.read_only), ("ide0-hd0", 0, false, false));
    assert_eq!(hd.file.as_deref(), Some("/path/img"));
    assert_eq!(hd.cache, CacheMode::Writeback);
    assert_eq!((hd.werror, hd.rerror), (ErrorPolicy::Enospc, ErrorPolicy::Report));
    assert_eq!(hd.retry_interval, Duration::from_secs(5));
    let cd = &c.drives[1];
    assert_eq!((cd.id.as_str(), cd.slot, cd.cdrom, cd.read_only), ("ide-5632", 2, true, true));
    assert_eq!(cd.device_id.as_deref(), Some("ide-5632"));
    assert_eq!(cd.file.as_deref(), Some("/path/cd.iso"));
    assert!(c.warnings.iter().any(|w| w.contains("cirrus-vga")), "{:?}", c.warnings);
}

#[test]
fn qemu_xen_nested_probe_argv() {
    let c = run("-xen-domid 6 -no-shutdown -chardev socket,id=libxl-cmd,path=/var/run/xen/qmp-libxl-6,server=on,wait=off -mon chardev=libxl-cmd,mode=control -chardev socket,id=libxenstat-cmd,path=/var/run/xen/qmp-libxenstat-6,server=on,wait=off -mon chardev=libxenstat-cmd,mode=control -nodefaults -no-user-config -name probe-qemuxen -vnc 127.0.0.1:0,to=99 -display none -device cirrus-vga,vgamem_mb=8 -boot order=cda -net none -machine xenfv,suppress-vmdesc=on -m 24");
    assert_eq!((c.flavour, c.domid, c.ram_mib), (Flavour::QemuXen, Some(6), 24));
    assert_eq!(c.name.as_deref(), Some("probe-qemuxen"));
    assert!(c.drives.is_empty());
    assert!(c.warnings.iter().any(|w| w.starts_with("-vnc 127.0.0.1:0,to=99")), "{:?}", c.warnings);
    assert_eq!(c.qmp.len(), 2);
}

/// libxl_dm.c for a PV or PVH domain with a qdisk disk (Xen 4.17-4.21):
/// `-xen-attach` is a flag, so `-name` after it stays an option.
#[test]
fn qemu_xen_pv_domain_argv() {
    let c = run("-xen-domid 4 -no-shutdown -chardev socket,id=libxl-cmd,path=/var/run/xen/qmp-libxl-4,server=on,wait=off -mon chardev=libxl-cmd,mode=control -chardev socket,id=libxenstat-cmd,path=/var/run/xen/qmp-libxenstat-4,server=on,wait=off -mon chardev=libxenstat-cmd,mode=control -nodefaults -no-user-config -xen-attach -name pvh-guest -nographic -machine xenpv -m 257");
    assert_eq!((c.flavour, c.domid, c.ram_mib), (Flavour::XenPv, Some(4), 257));
    assert_eq!(c.name.as_deref(), Some("pvh-guest"));
    assert!(c.drives.is_empty());
    assert_eq!(c.qmp.len(), 2);
}

#[test]
fn qemu_xen_dm_restrict_with_fd_and_no_platform_device() {
    let c = run("-xen-domid 9 -chardev socket,id=libxl-cmd,fd=17,server=on,wait=off -mon chardev=libxl-cmd,mode=control -S -xen-domid-restrict -chroot /var/run/xen/qemu-root-9 -runas xen-qemuuser-9 -smp 2,maxcpus=4 -no-acpi -machine pc,accel=xen,suppress-vmdesc=on,max-ram-below-4g=3G -m 512");
    assert_eq!(c.qmp, vec![QmpEndpoint::Fd { label: "libxl-cmd".into(), fd: 17 }]);
    assert!(c.start_paused && c.domid_restrict && !c.acpi && !c.xen_platform_device);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    assert_eq!(c.chroot, Some(PathBuf::from("/var/run/xen/qemu-root-9")));
    assert_eq!(c.runas.as_deref(), Some("xen-qemuuser-9"));
    assert_eq!((c.vcpus, c.max_vcpus), (2, 4));
    assert_eq!(c.max_ram_below_4g, Some(3 << 30));
    let c = run("-xen-domid 9 -run-with chroot=/var/run/xen/qemu-root-9,user=xen-qemuuser-9");
    assert_eq!((c.chroot.as_deref(), c.runas.as_deref()), (Some(std::path::Path::new("/var/run/xen/qemu-root-9")), Some("xen-qemuuser-9")));
    let c = run("-xen-domid 9 -chardev pty,id=spare");
    assert_eq!(c.warnings, vec!["-chardev id=spare: not used by any -mon; ignored".to_string()]);
}

#[test]
fn libxl_420_probe_run() {
    let c = run("-S -no-user-config -nodefaults -nographic -machine none,accel=xen -chardev socket,id=libxl-cmd,fd=5,server=on,wait=off -mon chardev=libxl-cmd,mode=control");
    assert_eq!(c.flavour, Flavour::Probe);
    assert_eq!(c.domid, None);
    assert_eq!(c.qmp, vec![QmpEndpoint::Fd { label: "libxl-cmd".into(), fd: 5 }]);
    assert!(c.start_paused);
}

#[test]
fn traditional_argv_lines_from_nested_xen() {
    let c = run("-d 1 -domain-name probe-hvm -vnc 127.0.0.1:0 -vncunused -videoram 4 -boot cda -acpi -vcpu_avail 0x01 -net none -M xenfv");
    assert_eq!((c.flavour, c.domid), (Flavour::Traditional, Some(1)));
    assert_eq!(c.name.as_deref(), Some("probe-hvm"));
    assert!(c.acpi && c.xen_platform_device);
    assert_eq!(c.boot_order, "cda");

    let c = run("-d 3 -domain-name probe-full -vnc 0.0.0.0:3 -vncunused -k en-us -serial pty -videoram 8 -boot dc -usb -usbdevice tablet -soundhw sb16 -acpi -vcpus 2 -vcpu_avail 0x03 -net none -M xenfv");
    assert_eq!((c.domid, c.vcpus, c.max_vcpus), (Some(3), 2, 2));
    assert_eq!(c.boot_order, "dc");
    assert_eq!(c.serial, vec![SerialSpec::Pty]);
    for what in ["-usb", "-usbdevice", "-soundhw", "-vnc"] {
        assert!(c.warnings.iter().any(|w| w.starts_with(what)), "{what}: {:?}", c.warnings);
    }

    let c = run("-d 1 -domain-name probe-devs -nographic -serial pty -nographic -videoram 4 -boot cda -acpi -vcpu_avail 0x01 -net nic,vlan=0,macaddr=00:16:3e:00:00:01,model=e1000 -net tap,vlan=0,ifname=vif1.0-emu,bridge=xenbr0,script=no,downscript=no -M xenfv");
    assert_eq!(c.warnings.iter().filter(|w| w.starts_with("-net")).count(), 2);

    let c = run("-d 7 -domain-name g1 -nographic -serial pty -nographic -videoram 4 -boot cda -acpi -vcpu_avail 0x01 -net none -M xenfv");
    assert_eq!(c.domid, Some(7));
    assert!(c.drives.is_empty());
}

#[test]
fn qtest_command_line() {
    let c = run("-machine pc -m 128 -accel qtest -nodefaults -display none -qtest unix:/tmp/qt.sock -qtest-log /dev/null -qmp unix:/tmp/qmp.sock,server=on,wait=off -drive if=ide,index=0,media=disk,format=raw,cache=writeback,file=/tmp/d.img,werror=stop,rerror=stop -drive if=ide,index=2,media=cdrom,format=raw,file=/tmp/cd.iso -accel tcg -cpu max -smp 1 -vga none -serial none -no-reboot -monitor none -bios /usr/share/seabios/bios.bin");
    assert_eq!(c.flavour, Flavour::Qtest);
    assert_eq!(c.qtest, Some(QtestEndpoint::Unix("/tmp/qt.sock".into())));
    assert_eq!(c.qtest_log, Some(PathBuf::from("/dev/null")));
    assert_eq!(c.qmp, vec![QmpEndpoint::UnixPath { label: "compat_monitor0".into(), path: "/tmp/qmp.sock".into() }]);
    assert_eq!(c.serial, vec![SerialSpec::None]);
    assert!(!c.xen_platform_device);
    assert_eq!(c.drives[0].id, "ide0-hd0");
    assert_eq!((c.drives[0].werror, c.drives[0].rerror), (ErrorPolicy::Stop, ErrorPolicy::Stop));
    assert_eq!((c.drives[1].id.as_str(), c.drives[1].slot, c.drives[1].cdrom), ("ide1-cd0", 2, true));

    let c = run("-accel qtest -accel kvm -qtest stdio -d guest_errors");
    assert_eq!(c.flavour, Flavour::Qtest);
    assert!(c.warnings.iter().any(|w| w.starts_with("-accel kvm")), "{:?}", c.warnings);
    assert!(c.warnings.iter().any(|w| w.starts_with("-d guest_errors")), "{:?}", c.warnings);
    let c = run("--machine pc --accel qtest --qtest stdio -cdrom /tmp/x.iso -hda /tmp/a.img");
    assert_eq!(c.qtest, Some(QtestEndpoint::Stdio));
    let ids: Vec<_> = c.drives.iter().map(|d| (d.id.as_str(), d.slot)).collect();
    assert_eq!(ids, vec![("ide0-hd0", 0), ("ide1-cd0", 2)]);
}

#[test]
fn qtest_if_none_with_ide_devices() {
    let c = run("-accel qtest -qtest stdio -drive if=none,id=cd,file=,media=cdrom -device ide-cd,drive=cd,bus=ide.1,unit=1 -drive if=none,id=disk,file=/tmp/d.img -device ide-hd,drive=disk,bus=ide.0,serial=ABC,model=Disky,werror=report");
    assert_eq!(c.drives.len(), 2);
    let hd = &c.drives[0];
    assert_eq!((hd.id.as_str(), hd.slot, hd.serial.as_deref(), hd.model.as_deref()), ("disk", 0, Some("ABC"), Some("Disky")));
    assert_eq!(hd.werror, ErrorPolicy::Report);
    let cd = &c.drives[1];
    assert_eq!((cd.id.as_str(), cd.slot, cd.file.as_deref()), ("cd", 3, None));
}

#[test]
fn comma_escaping_in_file_names() {
    let c = run("-xen-domid 3 -drive file=/img/a,,b.raw,if=ide,index=1,format=raw -cdrom /iso/x,y.iso");
    assert_eq!(c.drives[0].file.as_deref(), Some("/img/a,b.raw"));
    assert_eq!(c.drives[0].slot, 1);
    assert_eq!(c.drives[1].file.as_deref(), Some("/iso/x,y.iso"));
}

#[test]
fn globals_and_retry_interval_precedence() {
    let c = run("-xen-domid 3 -global ide-hd.werror=stop -global ide-hd.retry-interval=0 -global driver=ide-cd,property=rerror,value=ignore -drive file=/a,if=ide,index=0,werror=report,rerror=stop -drive file=/b,if=ide,index=1,retry-interval=30 -cdrom /c");
    // QEMU applies -global device properties over the -drive options.
    assert_eq!(c.drives[0].werror, ErrorPolicy::Stop);
    assert_eq!(c.drives[0].rerror, ErrorPolicy::Stop);
    assert_eq!(c.drives[0].retry_interval, Duration::ZERO);
    assert_eq!(c.drives[1].retry_interval, Duration::ZERO);
    assert_eq!(c.drives[2].rerror, ErrorPolicy::Ignore);
    let c = run("-xen-domid 3 -global ide-cd.rerror=enospc -drive if=none,id=d,file=/a -device ide-hd,drive=d,rerror=enospc -cdrom /c");
    assert_eq!((c.drives[0].rerror, c.drives[1].rerror), (ErrorPolicy::Enospc, ErrorPolicy::Enospc));
    let c = run("-xen-domid 3 -drive file=/b,if=ide,index=1,retry-interval=30");
    assert_eq!(c.drives[0].retry_interval, Duration::from_secs(30));
}

#[test]
fn print_and_exit_options() {
    assert_eq!(
        parse_args(&args("-accel help")),
        Ok(Command::PrintAndExit { text: "Accelerators supported in QEMU binary:\nqtest\nxen\n".into() })
    );
    for line in ["-version", "--version", "-h", "--help"] {
        assert!(matches!(parse_args(&args(line)), Ok(Command::PrintAndExit { .. })), "{line}");
    }
}

#[test]
fn every_error_is_one_line_naming_the_option() {
    let cases = [
        ("-xen-domid 1 -frobnicate", "-frobnicate: unknown option"),
        ("-xen-domid", "-xen-domid: requires an argument"),
        ("-xen-domid x1", "-xen-domid: 'x1' is not a guest domain id (1..32751)"),
        ("-xen-domid 1 -drive if=scsi,file=/a", "-drive: if=scsi: only if=ide and if=none are supported"),
        ("-xen-domid 1 -drive if=virtio,file=/a", "-drive: if=virtio: only if=ide and if=none are supported"),
        ("-xen-domid 1 -drive file=/a,format=vpc", "-drive: format=vpc: not supported (the imago image library has no vpc driver); supported: raw, qcow2, vmdk (read-only); convert with qemu-img convert -O qcow2"),
        ("-xen-domid 1 -drive file=/a,format=vmdk", "-drive: ide0-hd0: format=vmdk: VMDK images can only be read (imago cannot write VMDK): use the image as a CD-ROM (media=cdrom) or convert it with qemu-img convert -O qcow2"),
        ("-xen-domid 1 -drive file=/a,index=0 -hda /b", "-hda: ide.0 unit 0 already holds a drive"),
        ("-xen-domid 1 -drive file=/a,index=4", "-drive: index=4 is beyond ide.1 unit 1"),
        ("-xen-domid 1 -drive file=/a,bus=2,unit=0", "-drive: bus=2,unit=0 is beyond ide.1 unit 1"),
        ("-xen-domid 1 -drive if=none,id=d,file=/a -device ide-hd,drive=d,bus=ide.2", "-device ide-hd: bus=ide.2: only ide.0 and ide.1 exist"),
        ("-xen-domid 1 -drive file=/a,readonly=on", "-drive: ide0-hd0: qemu-xen doesn't support read-only IDE disks"),
        ("-xen-domid 1 -drive file=/a,werror=halt", "-drive werror: 'halt' is not one of report, ignore, stop, enospc"),
        ("-xen-domid 1 -drive file=/a,rerror=enospc", "-drive rerror: 'enospc' invalid read error action"),
        ("-xen-domid 1 -drive file=/a,cache=fast", "-drive: cache=fast: not one of writeback, writethrough, none, directsync, unsafe"),
        ("-xen-domid 1 -drive file=/a,retry-interval=soon", "-drive retry-interval: 'soon' is not a number of seconds (0..86400)"),
        ("-xen-domid 1 -global ide-hd.werror=maybe", "-global ide-hd.werror: 'maybe' is not one of report, ignore, stop, enospc"),
        ("-xen-domid 1 -global xen-block.werror=maybe", "-global xen-block.werror: 'maybe' is not one of report, ignore, stop, enospc"),
        ("-xen-domid 1 -accel qtest", "-accel qtest: cannot be combined with -xen-domid/-d (pick Xen or qtest)"),
        ("-accel kvm -qtest stdio", "-qtest: needs -accel qtest (or tcg)"),
        ("-machine pc -m 128", "no -xen-domid N, -d N or -qtest given: nothing to serve"),
        ("-xen-domid 1 -incoming tcp:0:4444", "-incoming: only fd:N (a file libxl opened) and defer are supported"),
        ("-xen-domid 1 -incoming fd:-3", "-incoming: only fd:N (a file libxl opened) and defer are supported"),
        ("-d 1 -loadvm /var/lib/xen/qemu-resume.1", "-loadvm: restoring a saved device state is not supported"),
        ("-d 0", "-d: '0' is not a guest domain id (1..32751)"),
        ("-accel qtest -accel kvm -qtest stdio -xen-domid 3", "-accel qtest: cannot be combined with -xen-domid/-d (pick Xen or qtest)"),
        ("-xen-domid 1 -d 2", "-xen-domid and -d: give the domain once"),
        ("-xen-domid 1 -m lots", "-m: 'lots' is not a memory size"),
        ("-xen-domid 1 -mon chardev=nope,mode=control", "-mon: chardev=nope names no -chardev"),
        ("-xen-domid 1 -device virtio-blk-pci,drive=d", "-device: virtio-blk-pci,drive=d: only ide-hd and ide-cd can attach a drive"),
        ("-xen-domid 1 -device ide-hd,drive=nope", "-device ide-hd: drive=nope: no -drive if=none,id=nope"),
        ("-xen-domid 1 -machine q35", "-machine: machine 'q35' is not supported (pc, xenfv, xenpv or none)"),
        ("-xen-domid 1 -drive file=/a,bogus=1", "-drive: bogus=: unknown drive property"),
        ("-xen-domid 1 -serial tcp:1.2.3.4:5", "-serial: 'tcp:1.2.3.4:5': only pty, null, stdio, file:PATH and none are supported"),
        ("-d 1 -hda /a", "-drive: qemu-xen-traditional (-d) takes its disks from xenstore"),
        ("-xen-domid 1 -smp 4,maxcpus=2", "-smp: maxcpus=2 is less than cpus=4"),
        ("-accel qtest -qtest tcp:1", "-qtest: 'tcp:1': only stdio and unix:PATH are supported"),
    ];
    for (line, want) in cases {
        assert_eq!(error(line), want, "{line}");
    }
}

#[test]
fn fifth_drive_finds_no_free_slot() {
    assert_eq!(
        error("-xen-domid 1 -hda /a -hdb /b -hdc /c -hdd /d -drive file=/e"),
        "-drive: all four IDE slots are taken"
    );
}

/// An in-memory xenstore (also for launch's tests).
#[derive(Default)]
pub(crate) struct FakeStore(std::collections::BTreeMap<String, String>);

impl FakeStore {
    pub(crate) fn set(&mut self, path: &str, value: &str) {
        self.0.insert(path.to_string(), value.to_string());
    }
    fn vbd(&mut self, devid: u32, dev: &str, kind: &str, params: &str, mode: &str, cdrom: bool) {
        let fe = format!("/local/domain/4/device/vbd/{devid}");
        let be = format!("/local/domain/0/backend/vbd/4/{devid}");
        self.set(&format!("{fe}/backend"), &be);
        self.set(&format!("{be}/frontend"), &fe);
        self.set(&format!("{be}/dev"), dev);
        self.set(&format!("{be}/type"), kind);
        self.set(&format!("{be}/params"), params);
        self.set(&format!("{be}/mode"), mode);
        self.set(&format!("{fe}/device-type"), if cdrom { "cdrom" } else { "disk" });
    }
}

impl XenstoreRead for FakeStore {
    fn read(&self, path: &str) -> Option<String> {
        self.0.get(path).cloned()
    }
    fn directory(&self, path: &str) -> Vec<String> {
        let prefix = format!("{path}/");
        let mut names: Vec<String> = self
            .0
            .keys()
            .filter_map(|k| k.strip_prefix(&prefix))
            .map(|rest| rest.split('/').next().unwrap_or("").to_string())
            .collect();
        names.dedup();
        names
    }
}

#[test]
fn traditional_disks_from_xenstore() {
    let mut store = FakeStore::default();
    store.vbd(768, "hda", "file", "aio:/srv/disk.img", "w", false);
    store.vbd(5632, "hdc:cdrom", "phy", "loop3", "r", true);
    store.vbd(51712, "xvda", "phy", "/dev/vg/x", "w", false);
    store.vbd(832, "hdb", "phy", "blkdebug:/tb/rules.ini:/srv/b.img", "w", false);
    let mut drives = drives_from_xenstore(&store, 4).unwrap();
    assert_eq!(drives.len(), 3);
    assert_eq!((drives[0].id.as_str(), drives[0].slot, drives[0].file.as_deref()), ("ide0-hd0", 0, Some("/srv/disk.img")));
    let b = drives.remove(1);
    assert_eq!((b.id.as_str(), b.file.as_deref()), ("ide0-hd1", Some("blkdebug:/tb/rules.ini:/srv/b.img")));
    assert!(!drives[0].read_only);
    assert_eq!((drives[0].werror, drives[0].rerror), (ErrorPolicy::Report, ErrorPolicy::Report));
    assert_eq!((drives[1].id.as_str(), drives[1].slot, drives[1].file.as_deref()), ("ide1-cd0", 2, Some("/dev/loop3")));
    assert!(drives[1].cdrom && drives[1].read_only);
}

#[test]
fn xenstore_backend_must_point_back() {
    let mut store = FakeStore::default();
    store.vbd(768, "hda", "file", "/srv/disk.img", "w", false);
    store.set("/local/domain/0/backend/vbd/4/768/frontend", "/local/domain/5/device/vbd/768");
    let err = drives_from_xenstore(&store, 4).unwrap_err().to_string();
    assert_eq!(err, "xenstore /local/domain/0/backend/vbd/4/768/frontend: does not point back to /local/domain/4/device/vbd/768");
}

#[test]
fn xenstore_errors() {
    let mut store = FakeStore::default();
    store.vbd(768, "hda", "file", "vhd:/srv/disk.vhd", "w", false);
    assert!(drives_from_xenstore(&store, 4).unwrap_err().to_string().contains("format vhd is not supported"));
    let mut store = FakeStore::default();
    store.vbd(768, "hda", "file", "raw:/a", "w", false);
    store.vbd(769, "hda", "file", "/b", "w", false);
    assert!(drives_from_xenstore(&store, 4).unwrap_err().to_string().contains("already holds a drive"));
    let mut store = FakeStore::default();
    store.vbd(768, "hda", "file", "/a", "rw", false);
    assert!(drives_from_xenstore(&store, 4).unwrap_err().to_string().contains("'rw' is neither r nor w"));
    let mut store = FakeStore::default();
    store.set("/local/domain/4/device/vbd/768/backend", "/local/domain/0/backend/vif/4/0");
    assert!(drives_from_xenstore(&store, 4).unwrap().is_empty(), "a vif backend is no disk");
    let store = FakeStore::default();
    assert_eq!(drives_from_xenstore(&store, 4), Ok(vec![]));
}

#[test]
fn libxl_ahci_disks_are_refused_by_name() {
    let line = "-xen-domid 2 -device ahci,id=ahci0 -drive if=none,id=ahcidisk-0,file=/a,format=raw -device ide-hd,bus=ahci0.0,unit=0,drive=ahcidisk-0";
    assert_eq!(error(line), "-device ide-hd: bus=ahci0.0: only ide.0 and ide.1 exist");
    let c = run("-xen-domid 2 -sdl -spice port=5900 -acpitable file=/x.bin");
    assert_eq!(c.warnings.len(), 3, "{:?}", c.warnings);
}

#[test]
fn libxl_empty_cdrom_drive() {
    let c = run("-xen-domid 2 -drive if=none,readonly=on,id=ide-5632 -device ide-cd,id=ide-5632,drive=ide-5632,bus=ide.1,unit=0");
    assert_eq!(c.drives.len(), 1);
    assert_eq!((c.drives[0].slot, c.drives[0].cdrom, c.drives[0].file.as_deref()), (2, true, None));
    assert_eq!(
        error("-xen-domid 2 -drive if=none,id=h -device ide-hd,drive=h"),
        "-device ide-hd: drive=h: a hard disk needs file="
    );
}

#[test]
fn differential_suite_command_line_with_blkdebug() {
    // The shape the differential suite gives both QEMU and us (ide-behaviour.md §8).
    let c = run("-machine pc -m 128 -accel tcg -bios /tmp/d/halt.bin -nodefaults -display none -qtest stdio -qmp unix:/tmp/d/qmp.sock,server=on,wait=off -drive if=ide,index=0,media=disk,format=raw,cache=writeback,file=blkdebug:/tmp/d/blkdebug0.ini:/tmp/d/drive0.img,werror=report,rerror=report -drive if=ide,index=3,media=cdrom");
    assert_eq!(c.flavour, Flavour::Qtest);
    assert_eq!(c.qtest, Some(QtestEndpoint::Stdio));
    assert_eq!(c.drives[0].file.as_deref(), Some("blkdebug:/tmp/d/blkdebug0.ini:/tmp/d/drive0.img"));
    assert_eq!((c.drives[0].werror, c.drives[0].rerror), (ErrorPolicy::Report, ErrorPolicy::Report));
    assert_eq!((c.drives[1].id.as_str(), c.drives[1].slot, c.drives[1].file.as_deref()), ("ide1-cd1", 3, None));
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn a_chardev_without_server_is_a_monitor_we_connect_to_as_libqtest_expects() {
    let args: Vec<String> = "-machine pc -accel qtest -qtest unix:/tmp/q.sock -chardev socket,path=/tmp/m.sock,id=char0 -mon chardev=char0,mode=control -display none"
        .split_whitespace()
        .map(String::from)
        .collect();
    let Command::Run(c) = parse_args(&args).unwrap() else { panic!("not a run") };
    assert_eq!(c.qmp, vec![QmpEndpoint::Connect { label: "char0".into(), path: "/tmp/m.sock".into() }]);
}

#[test]
fn a_forged_backend_path_skips_the_disk_and_keeps_the_others() {
    // Each value is one a guest could write into its frontend's `backend`;
    // every one ends in "4/768" and contains "/backend/vbd/", which the old
    // check accepted.
    let hostile = [
        "/local/domain/4/data/backend/vbd/4/768",
        "/local/domain/7/backend/vbd/4/768",
        "/local/domain/0/backend/vbd/../../4/data/x/4/768",
        "/local/domain/0/backend/vbd/14/768",
        "/local/domain/0/backend/vbd/4/1768",
        "/local/domain/0/backend/vbd/4/0/../768",
        "//local/domain/0/backend/vbd/4/768",
    ];
    for forged in hostile {
        let mut store = FakeStore::default();
        store.vbd(768, "hda", "phy", "/srv/guest.img", "w", false);
        store.vbd(832, "hdb", "phy", "/srv/guest2.img", "w", false);
        // The forged target looks like a complete backend for dom0's disk.
        store.set("/local/domain/4/device/vbd/768/backend", forged);
        store.set(&format!("{forged}/frontend"), "/local/domain/4/device/vbd/768");
        store.set(&format!("{forged}/dev"), "hda");
        store.set(&format!("{forged}/type"), "phy");
        store.set(&format!("{forged}/params"), "/dev/sda");
        store.set(&format!("{forged}/mode"), "w");
        let drives = drives_from_xenstore(&store, 4).unwrap();
        let files: Vec<_> = drives.iter().map(|d| d.file.as_deref()).collect();
        assert_eq!(files, vec![Some("/srv/guest2.img")], "backend {forged}");
    }
}

#[test]
fn backend_paths_are_checked_component_by_component() {
    use crate::control::cmdline::{check_backend_path, BackendPathError};
    assert_eq!(check_backend_path("/local/domain/0/backend/vbd/4/768", 4, "768"), Ok(()));
    assert_eq!(check_backend_path("/local/domain/0/backend/qdisk/4/5632", 4, "5632"), Ok(()));
    assert_eq!(check_backend_path("/local/domain/4/backend/vbd/4/768", 4, "768"), Err(BackendPathError::NotDom0));
    assert_eq!(check_backend_path("/local/domain/0/backend/vif/4/768", 4, "768"), Err(BackendPathError::Kind));
    assert_eq!(check_backend_path("/local/domain/0/backend/vbd/14/768", 4, "768"), Err(BackendPathError::Domain));
    assert_eq!(check_backend_path("/local/domain/0/backend/vbd/4/768/x", 4, "768"), Err(BackendPathError::Device));
    assert_eq!(check_backend_path("/local/domain/0/backend/vbd/4/76", 4, "768"), Err(BackendPathError::Device));
}

#[test]
fn one_descriptor_for_two_monitors_is_a_configuration_error() {
    assert_eq!(
        error("-xen-domid 3 -chardev socket,id=a,fd=17,server=on,wait=off -mon chardev=a,mode=control \
               -chardev socket,id=b,fd=17,server=on,wait=off -mon chardev=b,mode=control"),
        "-chardev: fd=17 is already used by -chardev id=a; each descriptor can serve one monitor"
    );
    // The same chardev under two monitors adopts its descriptor twice too.
    assert_eq!(
        error("-xen-domid 3 -chardev socket,id=a,fd=17,server=on,wait=off -mon chardev=a,mode=control -mon chardev=a,mode=control"),
        "-chardev: fd=17 is already used by -chardev id=a; each descriptor can serve one monitor"
    );
    assert_eq!(
        error("-xen-domid 3 -qmp socket,fd=9 -chardev socket,id=a,fd=9,server=on,wait=off -mon chardev=a,mode=control"),
        "-chardev: fd=9 is already used by -qmp; each descriptor can serve one monitor"
    );
    // Different descriptors are fine.
    let c = run("-xen-domid 3 -chardev socket,id=a,fd=17,server=on,wait=off -mon chardev=a,mode=control \
                 -chardev socket,id=b,fd=18,server=on,wait=off -mon chardev=b,mode=control");
    assert_eq!(c.qmp.len(), 2);
}

#[test]
fn direct_kernel_boot_options_are_taken_from_libxls_argv() {
    // libxl's HVM argv with kernel=, ramdisk= and cmdline= set: it adds the
    // three options after -display (libxl__build_device_model_args_new).
    let with = |extra: &str| QEMU_XEN_417.replace("-display none", &format!("-display none {extra}"));
    let c = run(&with("-kernel /boot/vmlinuz -initrd /boot/initrd.img -append console=ttyS0"));
    assert_eq!(
        c.direct_kernel,
        Some(DirectKernel {
            kernel: "/boot/vmlinuz".into(),
            initrd: Some("/boot/initrd.img".into()),
            append: "console=ttyS0".into()
        })
    );
    assert_eq!(c.firmware_dir, std::path::PathBuf::from(DEFAULT_FIRMWARE_DIR));
    let c = run(&with("-kernel /k -L /opt/fw"));
    assert_eq!(c.direct_kernel.as_ref().map(|k| (k.initrd.clone(), k.append.as_str())), Some((None, "")));
    assert_eq!(c.firmware_dir, std::path::PathBuf::from("/opt/fw"));
    // As QEMU: an initrd or a command line without a kernel is an error.
    assert_eq!(error(&with("-initrd /boot/initrd.img")), "-initrd: only allowed with -kernel");
    assert_eq!(error(&with("-append console=ttyS0")), "-append: only allowed with -kernel");
    // Without kernel= libxl passes none of them, and the argv still runs.
    assert_eq!(run(QEMU_XEN_417).direct_kernel, None);
}

#[test]
fn libxl_qcow2_disks_are_accepted_from_argv_and_xenstore() {
    // libxl_dm.c: "file=%s,if=ide,index=%d,media=disk,format=%s,cache=writeback"
    // with qemu_disk_format_string(LIBXL_DISK_FORMAT_QCOW2) = "qcow2".
    let line = QEMU_XEN_417.replace("file=/path/img,if=ide,index=0,media=disk,format=raw", "file=/path/img.qcow2,if=ide,index=0,media=disk,format=qcow2");
    let c = run(&line);
    let hd = c.drives.iter().find(|d| d.slot == 0).unwrap();
    assert_eq!((hd.format.as_str(), hd.file.as_deref()), ("qcow2", Some("/path/img.qcow2")));
    // A VMDK CD-ROM is read-only, so it is served.
    let c = run(&format!("{line} -drive if=ide,index=3,media=cdrom,format=vmdk,file=/iso/cd.vmdk"));
    assert_eq!(c.drives.iter().find(|d| d.slot == 3).unwrap().format, "vmdk");

    let mut store = FakeStore::default();
    store.vbd(768, "hda", "file", "tap:qcow2:/srv/disk.qcow2", "w", false);
    let drives = drives_from_xenstore(&store, 4).unwrap();
    assert_eq!((drives[0].format.as_str(), drives[0].file.as_deref()), ("qcow2", Some("/srv/disk.qcow2")));
}

#[test]
fn incoming_takes_a_descriptor_or_defer() {
    assert_eq!(run("-xen-domid 1 -incoming fd:5").incoming, Some(super::Incoming::Fd(5)));
    assert_eq!(run("-xen-domid 1 -incoming defer -S").incoming, Some(super::Incoming::Defer));
    assert_eq!(run("-xen-domid 1").incoming, None);
}

#[test]
fn xen_block_globals_set_the_qdisk_policy_and_leave_ide_alone() {
    let c = run("-xen-domid 3 -drive file=/a,if=ide,index=0");
    assert_eq!(
        c.pv_disk_policy,
        PvDiskPolicy { werror: ErrorPolicy::Enospc, rerror: ErrorPolicy::Report, retry_interval: Duration::from_secs(5) }
    );
    let c = run("-xen-domid 3 -global xen-block.werror=report -global driver=xen-block,property=rerror,value=stop -global xen-block.retry-interval=0 -drive file=/a,if=ide,index=0");
    assert_eq!(c.pv_disk_policy, PvDiskPolicy { werror: ErrorPolicy::Report, rerror: ErrorPolicy::Stop, retry_interval: Duration::ZERO });
    assert_eq!(c.drives[0].werror, ErrorPolicy::Enospc, "an IDE disk keeps its own default");
}

#[test]
fn libxl_channel_chardevs_become_the_consoles_host_ends() {
    // libxl_dm.c: one -chardev per xl channel=, "server,nowait" (4.17) or
    // "server=on,wait=off" spelling.
    let c = run(&format!(
        "{QEMU_XEN_417} -chardev pty,id=libxl-channel1 \
         -chardev socket,id=libxl-channel2,path=/run/xen/chan2.sock,server,nowait \
         -chardev socket,id=libxl-channel3,path=/run/xen/chan3.sock,server=on,wait=off"
    ));
    assert_eq!(
        c.channel_sockets,
        vec![
            ("libxl-channel2".to_string(), PathBuf::from("/run/xen/chan2.sock")),
            ("libxl-channel3".to_string(), PathBuf::from("/run/xen/chan3.sock")),
        ]
    );
    assert!(!c.warnings.iter().any(|w| w.contains("libxl-channel")), "{:?}", c.warnings);
    assert!(run(QEMU_XEN_417).channel_sockets.is_empty());
    // Another chardev not used by a monitor is still only warned about.
    let c = run(&format!("{QEMU_XEN_417} -chardev pty,id=other"));
    assert!(c.warnings.iter().any(|w| w.contains("-chardev id=other: not used")));
}

#[test]
fn a_channel_chardev_we_cannot_listen_on_is_refused_in_one_line() {
    let e = error(&format!("{QEMU_XEN_417} -chardev socket,id=libxl-channel1,path=/run/c.sock,server=off"));
    assert!(e.contains("-chardev") && e.contains("libxl-channel1") && e.contains("listening socket"), "{e}");
    let e = error(&format!("{QEMU_XEN_417} -chardev file,id=libxl-channel1,path=/tmp/x"));
    assert!(e.contains("libxl-channel1") && e.contains("pty or a socket, not file"), "{e}");
}
