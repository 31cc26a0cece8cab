// corral's sealed launcher, aarch64: the same program as launcher-x86_64.s.
        .text
        .globl _start
_start:
        mov     x21, sp                 // [x21] = argc, [x21, 8] = argv[0], ...
        ldr     x19, [x21]
        cmp     x19, #2
        b.lo    fail
        ldr     x1, [x21, #8]           // the control word
        ldrb    w2, [x1], #1
        cmp     w2, #'-'
        b.ne    fail
        ldrb    w2, [x1]
        cbz     w2, run
        mov     x20, #0                 // x20 = N
        mov     x3, #10
digit:
        ldrb    w2, [x1], #1
        cbz     w2, wait
        sub     w2, w2, #'0'
        cmp     w2, #9
        b.hi    fail
        madd    x20, x20, x3, x2
        b       digit
wait:
        mov     x0, #4                  // prctl(PR_SET_DUMPABLE, 0)
        mov     x1, #0
        mov     x8, #167
        svc     #0
        sub     sp, sp, #16
again:
        mov     x0, x20                 // read(N, buffer, 8)
        mov     x1, sp
        mov     x2, #8
        mov     x8, #63
        svc     #0
        cmn     x0, #4                  // EINTR: again
        b.eq    again
        cmp     x0, #8
        b.ne    fail
        mov     x0, x20                 // close(N)
        mov     x8, #57
        svc     #0
run:
        ldr     x0, [x21, #16]          // PATH
        add     x1, x21, #24            // &ARG0
        add     x2, x21, x19, lsl #3    // envp: past argv's NULL
        add     x2, x2, #16
        mov     x8, #221                // execve
        svc     #0
fail:
        mov     x0, #2                  // write(2, message, 45)
        adr     x1, message
        mov     x2, #45
        mov     x8, #64
        svc     #0
        mov     x0, #127                // exit_group(127)
        mov     x8, #94
        svc     #0
message:
        .ascii  "corral: cannot execute the container process\n"
