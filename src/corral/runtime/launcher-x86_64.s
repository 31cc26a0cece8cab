# corral's sealed launcher, x86_64. See corral/runtime/trampoline.py for why it exists.
#
#   argv = [CONTROL, PATH, ARG0, ARG1, ...]; envp is passed on unchanged.
#   CONTROL "-"   execve(PATH, [ARG0, ...], envp) at once
#   CONTROL "-N"  a container's init, waiting for `start`: become non-dumpable, read 8 bytes
#                 from fd N (a pipe: blocks until `start` writes to it), close N, execve.
#   anything else (for example "/proc/self/exe" when started as a script's interpreter):
#   a one-line message on stderr and exit status 127.
        .intel_syntax noprefix
        .text
        .globl _start
_start:
        mov     rbp, rsp                # [rbp] = argc, [rbp+8] = argv[0], ...
        mov     rbx, [rbp]
        cmp     rbx, 2
        jb      fail
        mov     rsi, [rbp+8]            # the control word
        cmp     byte ptr [rsi], '-'
        jne     fail
        inc     rsi
        cmp     byte ptr [rsi], 0
        je      run
        xor     r12d, r12d              # r12 = N
digit:
        movzx   eax, byte ptr [rsi]
        test    eax, eax
        jz      wait
        sub     eax, '0'
        cmp     eax, 9
        ja      fail
        imul    r12, r12, 10
        add     r12, rax
        inc     rsi
        jmp     digit
wait:
        mov     edi, 4                  # prctl(PR_SET_DUMPABLE, 0)
        xor     esi, esi
        mov     eax, 157
        syscall
        sub     rsp, 16
again:
        mov     rdi, r12                # read(N, buffer, 8)
        mov     rsi, rsp
        mov     edx, 8
        xor     eax, eax
        syscall
        cmp     rax, -4                 # EINTR: again
        je      again
        cmp     rax, 8
        jne     fail
        mov     rdi, r12                # close(N)
        mov     eax, 3
        syscall
run:
        mov     rdi, [rbp+16]           # PATH
        lea     rsi, [rbp+24]           # &ARG0
        lea     rdx, [rbp+rbx*8+16]     # envp: past argv's NULL
        mov     eax, 59                 # execve
        syscall
fail:
        mov     edi, 2                  # write(2, message, 45)
        lea     rsi, [rip+message]
        mov     edx, 45
        mov     eax, 1
        syscall
        mov     edi, 127                # exit_group(127)
        mov     eax, 231
        syscall
message:
        .ascii  "corral: cannot execute the container process\n"
