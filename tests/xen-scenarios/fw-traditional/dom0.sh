# Pass criteria: tb_firmware_run in tools/testbed/dom0-lib.sh.
tb_firmware_run fw-traditional fw.cfg
tb_finish
