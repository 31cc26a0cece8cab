// corral's per-container waiter, aarch64. See corral/engine/monitor/waiter.py for why it exists.
//
//   Started (execve) by the process that created the container, so the container's init is
//   its child. It reaps every child it has, writing (pid, wait status) as two little-endian
//   32-bit words to fd 3 (the container's exit file) for each, until none is left (ECHILD);
//   then it exits 0. It holds whatever other fds it was given (the log pipes) until then.
        .text
        .globl _start
_start:
        sub     sp, sp, #16             // [sp] = pid, [sp+4] = status
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
        mov     x0, #0
        mov     x8, #94                 // exit_group
        svc     #0
