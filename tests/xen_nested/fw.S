/* Probe firmware for xen-ioemu's ioreq server on a nested Xen (loaded by
 * libxenguest in place of hvmloader via xl firmware_override=; entered in
 * 32-bit flat protected mode, paging off, so linear = guest-physical).
 * Every line goes to Xen's debug port 0xE9 and shows up as "(d1) ...".
 * Exercises: PIO in/out, rep insw/outsw and a backwards rep insb through
 * guest memory (data_is_ptr, df), PCI config via 0xcf8/0xcfc, MMIO read,
 * write and rep movsl from MMIO to RAM, a request held by the device model
 * for 2 s, then IRQ and power-off requests. */
        .code32
        .text
        .globl _start
_start:
        cli
        mov     $0x00200000, %esp
        mov     $m_hello, %esi
        call    puts
        /* status register */
        mov     $0x1f7, %dx
        inb     %dx, %al
        mov     %al, %bl
        mov     $m_status, %esi
        call    puts
        mov     %bl, %al
        call    putbyte
        call    nl
        /* hold: the device model keeps the next request pending for 2 s */
        mov     $0x1f3, %dx
        outb    %al, %dx
        mov     $0x1f7, %dx
        inb     %dx, %al
        mov     %al, %bl
        mov     $m_held, %esi
        call    puts
        mov     %bl, %al
        call    putbyte
        call    nl
        /* rep insw: 4 words from the data port into buf */
        cld
        mov     $0x1f0, %dx
        mov     $buf, %edi
        mov     $4, %ecx
        rep insw
        mov     $m_insw, %esi
        call    puts
        mov     $buf, %esi
        mov     $8, %ecx
        call    dump
        /* rep outsw: 3 words from out to the data port */
        mov     $out, %esi
        mov     $3, %ecx
        mov     $0x1f0, %dx
        rep outsw
        /* std; rep insb: 3 bytes stored downwards from back+2 */
        std
        mov     $back+2, %edi
        mov     $3, %ecx
        mov     $0x1f0, %dx
        rep insb
        cld
        mov     $m_insb, %esi
        call    puts
        mov     $back, %esi
        mov     $3, %ecx
        call    dump
        mov     $0xcafef00d, %eax
        mov     $0x1f4, %dx
        outl    %eax, %dx
        /* PCI config of 00:01.1, register 8 (class/revision) */
        mov     $0x80000908, %eax
        mov     $0xcf8, %dx
        outl    %eax, %dx
        mov     $0xcfc, %dx
        inl     %dx, %eax
        mov     %eax, %ebx
        mov     $m_pci, %esi
        call    puts
        mov     %ebx, %eax
        call    putdword
        call    nl
        mov     $0xbeef, %ax
        mov     $0xcfe, %dx
        outw    %ax, %dx
        /* MMIO */
        mov     0xfebf0010, %ebx
        mov     $m_mmio, %esi
        call    puts
        mov     %ebx, %eax
        call    putdword
        call    nl
        movl    $0x11223344, 0xfebf0020
        mov     $0xfebf0000, %esi
        mov     $mbuf, %edi
        mov     $2, %ecx
        rep movsl
        mov     $m_movs, %esi
        call    puts
        mov     $mbuf, %esi
        mov     $8, %ecx
        call    dump
        /* IRQ 14 up and down, then power off */
        mov     $0x1f6, %dx
        mov     $1, %al
        outb    %al, %dx
        mov     $0, %al
        outb    %al, %dx
        mov     $m_off, %esi
        call    puts
        mov     $0x1f5, %dx
        outb    %al, %dx
        mov     $m_alive, %esi
        call    puts
1:      sti
        hlt
        jmp     1b
dump:   lodsb
        call    putbyte
        mov     $' ', %al
        outb    %al, $0xe9
        loop    dump
nl:     mov     $'\n', %al
        outb    %al, $0xe9
        ret
puts:   lodsb
        test    %al, %al
        jz      2f
        outb    %al, $0xe9
        jmp     puts
2:      ret
putdword:
        mov     $4, %ecx
4:      rol     $8, %eax
        push    %eax
        call    putbyte
        pop     %eax
        loop    4b
        ret
putbyte:
        push    %eax
        shr     $4, %al
        call    puthex
        pop     %eax
puthex: and     $0xf, %al
        cmp     $10, %al
        jb      3f
        add     $('a'-10-'0'), %al
3:      add     $'0', %al
        outb    %al, $0xe9
        ret
        .data
m_hello:  .asciz "RUSTDM-PROBE: hello from probe firmware\n"
m_status: .asciz "RUSTDM-PROBE: inb(0x1f7)=0x"
m_held:   .asciz "RUSTDM-PROBE: held inb(0x1f7)=0x"
m_insw:   .asciz "RUSTDM-PROBE: rep insw x4 from 0x1f0: "
m_insb:   .asciz "RUSTDM-PROBE: std; rep insb x3 (low to high): "
m_pci:    .asciz "RUSTDM-PROBE: pci 00:01.1 reg 8 = 0x"
m_mmio:   .asciz "RUSTDM-PROBE: mmio [0xfebf0010] = 0x"
m_movs:   .asciz "RUSTDM-PROBE: rep movsl x2 from 0xfebf0000: "
m_off:    .asciz "RUSTDM-PROBE: asking for power-off\n"
m_alive:  .asciz "RUSTDM-PROBE: still alive after power-off request\n"
buf:    .byte   0,0,0,0,0,0,0,0
out:    .word   0xa1a2, 0xb1b2, 0xc1c2
back:   .byte   0,0,0
mbuf:   .byte   0,0,0,0,0,0,0,0
