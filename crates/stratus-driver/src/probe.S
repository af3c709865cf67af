# The accelerator probe's boot sector (see accel.rs, which holds its bytes as PROBE_SECTOR).
# It does what an ordinary guest's kernel does first and a broken nested hypervisor fails at:
# from real mode it builds identity page tables for the first 64 MiB, enters 64-bit long mode,
# writes to 32 MiB of memory (a page fault per page on first touch), spins 300 million times
# (about 0.1 s on real hardware, a second under TCG), then prints its marker on the first serial
# port and halts. Assemble: as --64 -o probe.o probe.S && ld -Ttext 0x7c00 --oformat binary -o probe.bin probe.o
.intel_syntax noprefix
.code16
.globl _start
_start:
    cli
    xor ax, ax
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov sp, 0x7c00
    in al, 0x92
    or al, 2
    out 0x92, al
    mov di, 0x1000
    mov cx, 0x1800
    xor ax, ax
    rep stosw
    mov dword ptr [0x1000], 0x2003
    mov dword ptr [0x2000], 0x3003
    mov di, 0x3000
    mov eax, 0x83
    mov cx, 32
pd:
    mov [di], eax
    add eax, 0x200000
    add di, 8
    loop pd
    lgdt [gdtr]
    mov eax, cr4
    or eax, 0x20
    mov cr4, eax
    mov eax, 0x1000
    mov cr3, eax
    mov ecx, 0xC0000080
    rdmsr
    or eax, 0x100
    wrmsr
    mov eax, cr0
    or eax, 0x80000001
    mov cr0, eax
.att_syntax
    ljmp $0x08, $long
.intel_syntax noprefix
.code64
long:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov rdi, 0x800000
    mov rcx, 0x2000
touch:
    mov [rdi], rdi
    add rdi, 4096
    dec rcx
    jnz touch
    mov rcx, 300000000
spin:
    dec rcx
    jnz spin
    lea rsi, [rip + msg]
    mov dx, 0x3f8
print:
    lodsb
    test al, al
    jz done
    out dx, al
    jmp print
done:
    hlt
    jmp done
.p2align 3
gdt:
    .quad 0
    .quad 0x00209A0000000000
    .quad 0x0000920000000000
gdtr:
    .word 23
    .long gdt
msg:
    .asciz "stratus probe: long mode\r\n"
.org 510
    .byte 0x55, 0xaa
