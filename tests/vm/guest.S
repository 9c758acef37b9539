/* tests/vm/guest.S: a multiboot test guest. Its command line's "dirty=N" makes it rewrite one
 * word in every page of N MiB forever (a guest that keeps dirtying memory); without it, or with
 * N = 0, it halts with interrupts off (a guest whose memory never changes). */
        .set MB_MAGIC, 0x1BADB002
        .set MB_FLAGS, 0
        .set DIRTY_BASE, 0x200000       /* 2 MiB: above the kernel, below 64 MiB guest RAM */
        .set DIRTY_MAX_MIB, 56

        /* The header must sit in the file's first 8 KiB: keep it at the start of .text. */
        .text
        .globl _start
_start:
        jmp entry
        .align 4
        .long MB_MAGIC
        .long MB_FLAGS
        .long -(MB_MAGIC + MB_FLAGS)
entry:
        cli
        mov $stack_top, %esp
        xor %ecx, %ecx
        cmp $0x2BADB002, %eax           /* booted by a multiboot loader? */
        jne halt
        testl $4, (%ebx)                /* mbi.flags bit 2: cmdline present */
        jz halt
        mov 16(%ebx), %esi              /* mbi.cmdline: "KERNELPATH dirty=N" */
find_eq:
        movzbl (%esi), %eax
        test %eax, %eax
        jz halt
        inc %esi
        cmp $'=', %eax
        jne find_eq
digits:
        movzbl (%esi), %eax
        sub $'0', %eax
        cmp $9, %eax
        ja parsed
        imul $10, %ecx, %ecx
        add %eax, %ecx
        inc %esi
        jmp digits
parsed:
        test %ecx, %ecx
        jz halt
        cmp $DIRTY_MAX_MIB, %ecx
        jbe sized
        mov $DIRTY_MAX_MIB, %ecx
sized:
        shl $20, %ecx
        mov $DIRTY_BASE, %edi
        lea (%edi,%ecx), %edx           /* end of the dirtied range */
        xor %eax, %eax
pass:
        inc %eax
        mov %edi, %esi
page:
        mov %eax, (%esi)
        add $4096, %esi
        cmp %edx, %esi
        jb page
        jmp pass
halt:
        hlt
        jmp halt

        .bss
        .align 16
        .space 4096
stack_top:
