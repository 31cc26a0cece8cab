// corral's per-container waiter, aarch64. See corral/engine/monitor/waiter.py for why it exists.
//
//   Started (execve) by the process that created the container, so the container's init is
//   its child. It reaps every child it has, writing (pid, wait status) as two little-endian
//   32-bit words to fd 3 (the container's exit file) for each, until none is left (ECHILD).
//   Then it waits up to 5 s for fd 6 (a pipe whose write end it holds as fd 7) to be readable:
//   the monitor writes there once it has read the log pipes (fds 4 and 5) to the end. Exit 0.
        .text
        .globl _start
_start:
        sub     sp, sp, #32             // [sp] = pid, [sp+4] = status
reap:
        mov     x0, #-1                 // any child
        add     x1, sp, #4
        mov     x2, #0x40000000         // __WALL
        mov     x3, #0                  // no rusage
        mov     x8, #260                // wait4
        svc     #0
        cmn     x0, #4                  // EINTR: again
        b.eq    reap
        tbnz    x0, #63, done           // ECHILD: nobody left
        str     w0, [sp]
record:
        mov     x0, #3
        mov     x1, sp
        mov     x2, #8
        mov     x8, #64                 // write
        svc     #0
        cmn     x0, #4
        b.eq    record
        b       reap
done:
        mov     x0, #6                  // struct pollfd {fd 6, POLLIN}
        str     w0, [sp]
        mov     x0, #1
        str     w0, [sp, #4]
        mov     x0, #5                  // struct timespec {5 s, 0}
        str     x0, [sp, #16]
        str     xzr, [sp, #24]
        mov     x0, sp
        mov     x1, #1
        add     x2, sp, #16
        mov     x3, #0                  // no signal mask
        mov     x4, #0
        mov     x8, #73                 // ppoll
        svc     #0
        mov     x0, #0
        mov     x8, #94                 // exit_group
        svc     #0
