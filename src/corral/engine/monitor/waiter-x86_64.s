# corral's per-container waiter, x86_64. See corral/engine/monitor/waiter.py for why it exists.
#
#   Started (execve) by the process that created the container, so the container's init is
#   its child. It reaps every child it has, writing (pid, wait status) as two little-endian
#   32-bit words to fd 3 (the container's exit file) for each, until none is left (ECHILD).
#   Then it waits up to 5 s for fd 6 (a pipe whose write end it holds as fd 7) to be readable:
#   the monitor writes there once it has read the log pipes (fds 4 and 5) to the end. Exit 0.
        .intel_syntax noprefix
        .text
        .globl _start
_start:
        sub     rsp, 32                 # [rsp] = pid, [rsp+4] = status
reap:
        mov     rdi, -1                 # any child
        lea     rsi, [rsp+4]
        mov     edx, 0x40000000         # __WALL
        xor     r10d, r10d              # no rusage
        mov     eax, 61                 # wait4
        syscall
        cmp     rax, -4                 # EINTR: again
        je      reap
        test    rax, rax
        js      done                    # ECHILD: nobody left
        mov     [rsp], eax
record:
        mov     edi, 3
        mov     rsi, rsp
        mov     edx, 8
        mov     eax, 1                  # write
        syscall
        cmp     rax, -4
        je      record
        jmp     reap
done:
        mov     dword ptr [rsp], 6      # struct pollfd {fd 6, POLLIN}
        mov     dword ptr [rsp+4], 1
        mov     qword ptr [rsp+16], 5   # struct timespec {5 s, 0}
        mov     qword ptr [rsp+24], 0
        mov     rdi, rsp
        mov     esi, 1
        lea     rdx, [rsp+16]
        xor     r10d, r10d              # no signal mask
        xor     r8d, r8d
        mov     eax, 271                # ppoll
        syscall
        xor     edi, edi
        mov     eax, 231                # exit_group
        syscall
