//go:build !purego

#include "textflag.h"

// Elementwise float32 Add, Sub, Mul and Div on AVX (kernel_elementwise.go): dst[i] = x[i] op y[i]
// (VV), x[i] op s (VS) and s op y[i] (SV), 8 elements per instruction, the last n%8 one at a time.
// Each element is the one IEEE float32 operation, as in Go. Written out per op and mode (no macros)
// so that each function is plain to read.

// func avxAddVV(dst, x, y *float32, n int)
TEXT ·avxAddVV(SB), NOSPLIT, $0-32
	MOVQ dst+0(FP), DI
	MOVQ x+8(FP), SI
	MOVQ y+16(FP), DX
	MOVQ n+24(FP), CX
	CMPQ CX, $8
	JLT  tail
loop:
	VMOVUPS (SI), Y0
	VMOVUPS (DX), Y1
	VADDPS   Y1, Y0, Y0
	VMOVUPS Y0, (DI)
	ADDQ    $32, SI
	ADDQ    $32, DX
	ADDQ    $32, DI
	SUBQ    $8, CX
	CMPQ    CX, $8
	JGE     loop
tail:
	TESTQ CX, CX
	JZ    done
	VMOVSS (SI), X0
	VMOVSS (DX), X1
	VADDSS  X1, X0, X0
	VMOVSS X0, (DI)
	ADDQ   $4, SI
	ADDQ   $4, DX
	ADDQ   $4, DI
	DECQ   CX
	JMP    tail
done:
	VZEROUPPER
	RET

// func avxAddVS(dst, x *float32, s float32, n int)
TEXT ·avxAddVS(SB), NOSPLIT, $0-32
	MOVQ         dst+0(FP), DI
	MOVQ         x+8(FP), SI
	VBROADCASTSS s+16(FP), Y1
	MOVQ         n+24(FP), CX
	CMPQ         CX, $8
	JLT          tail
loop:
	VMOVUPS (SI), Y0
	VADDPS   Y1, Y0, Y0
	VMOVUPS Y0, (DI)
	ADDQ    $32, SI
	ADDQ    $32, DI
	SUBQ    $8, CX
	CMPQ    CX, $8
	JGE     loop
tail:
	TESTQ CX, CX
	JZ    done
	VMOVSS (SI), X0
	VADDSS  X1, X0, X0
	VMOVSS X0, (DI)
	ADDQ   $4, SI
	ADDQ   $4, DI
	DECQ   CX
	JMP    tail
done:
	VZEROUPPER
	RET

// func avxAddSV(dst, y *float32, s float32, n int)
TEXT ·avxAddSV(SB), NOSPLIT, $0-32
	MOVQ         dst+0(FP), DI
	MOVQ         y+8(FP), SI
	VBROADCASTSS s+16(FP), Y1
	MOVQ         n+24(FP), CX
	CMPQ         CX, $8
	JLT          tail
loop:
	VMOVUPS (SI), Y0
	VADDPS   Y0, Y1, Y0
	VMOVUPS Y0, (DI)
	ADDQ    $32, SI
	ADDQ    $32, DI
	SUBQ    $8, CX
	CMPQ    CX, $8
	JGE     loop
tail:
	TESTQ CX, CX
	JZ    done
	VMOVSS (SI), X0
	VADDSS  X0, X1, X0
	VMOVSS X0, (DI)
	ADDQ   $4, SI
	ADDQ   $4, DI
	DECQ   CX
	JMP    tail
done:
	VZEROUPPER
	RET

// func avxSubVV(dst, x, y *float32, n int)
TEXT ·avxSubVV(SB), NOSPLIT, $0-32
	MOVQ dst+0(FP), DI
	MOVQ x+8(FP), SI
	MOVQ y+16(FP), DX
	MOVQ n+24(FP), CX
	CMPQ CX, $8
	JLT  tail
loop:
	VMOVUPS (SI), Y0
	VMOVUPS (DX), Y1
	VSUBPS   Y1, Y0, Y0
	VMOVUPS Y0, (DI)
	ADDQ    $32, SI
	ADDQ    $32, DX
	ADDQ    $32, DI
	SUBQ    $8, CX
	CMPQ    CX, $8
	JGE     loop
tail:
	TESTQ CX, CX
	JZ    done
	VMOVSS (SI), X0
	VMOVSS (DX), X1
	VSUBSS  X1, X0, X0
	VMOVSS X0, (DI)
	ADDQ   $4, SI
	ADDQ   $4, DX
	ADDQ   $4, DI
	DECQ   CX
	JMP    tail
done:
	VZEROUPPER
	RET

// func avxSubVS(dst, x *float32, s float32, n int)
TEXT ·avxSubVS(SB), NOSPLIT, $0-32
	MOVQ         dst+0(FP), DI
	MOVQ         x+8(FP), SI
	VBROADCASTSS s+16(FP), Y1
	MOVQ         n+24(FP), CX
	CMPQ         CX, $8
	JLT          tail
loop:
	VMOVUPS (SI), Y0
	VSUBPS   Y1, Y0, Y0
	VMOVUPS Y0, (DI)
	ADDQ    $32, SI
	ADDQ    $32, DI
	SUBQ    $8, CX
	CMPQ    CX, $8
	JGE     loop
tail:
	TESTQ CX, CX
	JZ    done
	VMOVSS (SI), X0
	VSUBSS  X1, X0, X0
	VMOVSS X0, (DI)
	ADDQ   $4, SI
	ADDQ   $4, DI
	DECQ   CX
	JMP    tail
done:
	VZEROUPPER
	RET

// func avxSubSV(dst, y *float32, s float32, n int)
TEXT ·avxSubSV(SB), NOSPLIT, $0-32
	MOVQ         dst+0(FP), DI
	MOVQ         y+8(FP), SI
	VBROADCASTSS s+16(FP), Y1
	MOVQ         n+24(FP), CX
	CMPQ         CX, $8
	JLT          tail
loop:
	VMOVUPS (SI), Y0
	VSUBPS   Y0, Y1, Y0
	VMOVUPS Y0, (DI)
	ADDQ    $32, SI
	ADDQ    $32, DI
	SUBQ    $8, CX
	CMPQ    CX, $8
	JGE     loop
tail:
	TESTQ CX, CX
	JZ    done
	VMOVSS (SI), X0
	VSUBSS  X0, X1, X0
	VMOVSS X0, (DI)
	ADDQ   $4, SI
	ADDQ   $4, DI
	DECQ   CX
	JMP    tail
done:
	VZEROUPPER
	RET

// func avxMulVV(dst, x, y *float32, n int)
TEXT ·avxMulVV(SB), NOSPLIT, $0-32
	MOVQ dst+0(FP), DI
	MOVQ x+8(FP), SI
	MOVQ y+16(FP), DX
	MOVQ n+24(FP), CX
	CMPQ CX, $8
	JLT  tail
loop:
	VMOVUPS (SI), Y0
	VMOVUPS (DX), Y1
	VMULPS   Y1, Y0, Y0
	VMOVUPS Y0, (DI)
	ADDQ    $32, SI
	ADDQ    $32, DX
	ADDQ    $32, DI
	SUBQ    $8, CX
	CMPQ    CX, $8
	JGE     loop
tail:
	TESTQ CX, CX
	JZ    done
	VMOVSS (SI), X0
	VMOVSS (DX), X1
	VMULSS  X1, X0, X0
	VMOVSS X0, (DI)
	ADDQ   $4, SI
	ADDQ   $4, DX
	ADDQ   $4, DI
	DECQ   CX
	JMP    tail
done:
	VZEROUPPER
	RET

// func avxMulVS(dst, x *float32, s float32, n int)
TEXT ·avxMulVS(SB), NOSPLIT, $0-32
	MOVQ         dst+0(FP), DI
	MOVQ         x+8(FP), SI
	VBROADCASTSS s+16(FP), Y1
	MOVQ         n+24(FP), CX
	CMPQ         CX, $8
	JLT          tail
loop:
	VMOVUPS (SI), Y0
	VMULPS   Y1, Y0, Y0
	VMOVUPS Y0, (DI)
	ADDQ    $32, SI
	ADDQ    $32, DI
	SUBQ    $8, CX
	CMPQ    CX, $8
	JGE     loop
tail:
	TESTQ CX, CX
	JZ    done
	VMOVSS (SI), X0
	VMULSS  X1, X0, X0
	VMOVSS X0, (DI)
	ADDQ   $4, SI
	ADDQ   $4, DI
	DECQ   CX
	JMP    tail
done:
	VZEROUPPER
	RET

// func avxMulSV(dst, y *float32, s float32, n int)
TEXT ·avxMulSV(SB), NOSPLIT, $0-32
	MOVQ         dst+0(FP), DI
	MOVQ         y+8(FP), SI
	VBROADCASTSS s+16(FP), Y1
	MOVQ         n+24(FP), CX
	CMPQ         CX, $8
	JLT          tail
loop:
	VMOVUPS (SI), Y0
	VMULPS   Y0, Y1, Y0
	VMOVUPS Y0, (DI)
	ADDQ    $32, SI
	ADDQ    $32, DI
	SUBQ    $8, CX
	CMPQ    CX, $8
	JGE     loop
tail:
	TESTQ CX, CX
	JZ    done
	VMOVSS (SI), X0
	VMULSS  X0, X1, X0
	VMOVSS X0, (DI)
	ADDQ   $4, SI
	ADDQ   $4, DI
	DECQ   CX
	JMP    tail
done:
	VZEROUPPER
	RET

// func avxDivVV(dst, x, y *float32, n int)
TEXT ·avxDivVV(SB), NOSPLIT, $0-32
	MOVQ dst+0(FP), DI
	MOVQ x+8(FP), SI
	MOVQ y+16(FP), DX
	MOVQ n+24(FP), CX
	CMPQ CX, $8
	JLT  tail
loop:
	VMOVUPS (SI), Y0
	VMOVUPS (DX), Y1
	VDIVPS   Y1, Y0, Y0
	VMOVUPS Y0, (DI)
	ADDQ    $32, SI
	ADDQ    $32, DX
	ADDQ    $32, DI
	SUBQ    $8, CX
	CMPQ    CX, $8
	JGE     loop
tail:
	TESTQ CX, CX
	JZ    done
	VMOVSS (SI), X0
	VMOVSS (DX), X1
	VDIVSS  X1, X0, X0
	VMOVSS X0, (DI)
	ADDQ   $4, SI
	ADDQ   $4, DX
	ADDQ   $4, DI
	DECQ   CX
	JMP    tail
done:
	VZEROUPPER
	RET

// func avxDivVS(dst, x *float32, s float32, n int)
TEXT ·avxDivVS(SB), NOSPLIT, $0-32
	MOVQ         dst+0(FP), DI
	MOVQ         x+8(FP), SI
	VBROADCASTSS s+16(FP), Y1
	MOVQ         n+24(FP), CX
	CMPQ         CX, $8
	JLT          tail
loop:
	VMOVUPS (SI), Y0
	VDIVPS   Y1, Y0, Y0
	VMOVUPS Y0, (DI)
	ADDQ    $32, SI
	ADDQ    $32, DI
	SUBQ    $8, CX
	CMPQ    CX, $8
	JGE     loop
tail:
	TESTQ CX, CX
	JZ    done
	VMOVSS (SI), X0
	VDIVSS  X1, X0, X0
	VMOVSS X0, (DI)
	ADDQ   $4, SI
	ADDQ   $4, DI
	DECQ   CX
	JMP    tail
done:
	VZEROUPPER
	RET

// func avxDivSV(dst, y *float32, s float32, n int)
TEXT ·avxDivSV(SB), NOSPLIT, $0-32
	MOVQ         dst+0(FP), DI
	MOVQ         y+8(FP), SI
	VBROADCASTSS s+16(FP), Y1
	MOVQ         n+24(FP), CX
	CMPQ         CX, $8
	JLT          tail
loop:
	VMOVUPS (SI), Y0
	VDIVPS   Y0, Y1, Y0
	VMOVUPS Y0, (DI)
	ADDQ    $32, SI
	ADDQ    $32, DI
	SUBQ    $8, CX
	CMPQ    CX, $8
	JGE     loop
tail:
	TESTQ CX, CX
	JZ    done
	VMOVSS (SI), X0
	VDIVSS  X0, X1, X0
	VMOVSS X0, (DI)
	ADDQ   $4, SI
	ADDQ   $4, DI
	DECQ   CX
	JMP    tail
done:
	VZEROUPPER
	RET
