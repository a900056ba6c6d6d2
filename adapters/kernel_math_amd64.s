//go:build !purego

#include "textflag.h"

// Vector float32 Exp and Erf on AVX2 (kernel_math_amd64.go), 8 elements at a time, each the same
// sequence of float32 operations as expf and erff in kernel_math.go (no fused multiply-adds), so
// that the vector and scalar paths agree bit for bit (TestVectorMathAgrees).

DATA mathConsts<>+0(SB)/4, $0xc2ae0000 // lo = -87.0
DATA mathConsts<>+4(SB)/4, $0x42b00000 // hi = 88.0
DATA mathConsts<>+8(SB)/4, $0x3fb8aa3b // log2e = 1.4426950408889634
DATA mathConsts<>+12(SB)/4, $0x3f000000 // half = 0.5
DATA mathConsts<>+16(SB)/4, $0x3f318000 // c1 = 0.693359375
DATA mathConsts<>+20(SB)/4, $0xb95e8083 // c2 = -0.00021219444
DATA mathConsts<>+24(SB)/4, $0x39506967 // p0 = 0.000198756915
DATA mathConsts<>+28(SB)/4, $0x3ab743ce // p1 = 0.0013981999507
DATA mathConsts<>+32(SB)/4, $0x3c088908 // p2 = 0.0083334519073
DATA mathConsts<>+36(SB)/4, $0x3d2aa9c1 // p3 = 0.041665795894
DATA mathConsts<>+40(SB)/4, $0x3e2aaaaa // p4 = 0.16666665459
DATA mathConsts<>+44(SB)/4, $0x3f000000 // p5 = 0.50000001201
DATA mathConsts<>+48(SB)/4, $0x3f800000 // one = 1.0
DATA mathConsts<>+52(SB)/4, $0xc0800000 // m4 = -4.0
DATA mathConsts<>+56(SB)/4, $0x40800000 // four = 4.0
DATA mathConsts<>+60(SB)/4, $0xaf95df0b // a0 = -2.72614225801306e-10
DATA mathConsts<>+64(SB)/4, $0x32edffee // a1 = 2.77068142495902e-08
DATA mathConsts<>+68(SB)/4, $0xb60cff51 // a2 = -2.10102402082508e-06
DATA mathConsts<>+72(SB)/4, $0xb86ec2d2 // a3 = -5.69250639462346e-05
DATA mathConsts<>+76(SB)/4, $0xba40ac63 // a4 = -0.000734990630326855
DATA mathConsts<>+80(SB)/4, $0xbb41a1f6 // a5 = -0.00295459980854025
DATA mathConsts<>+84(SB)/4, $0xbc83dbd4 // a6 = -0.0160960333262415
DATA mathConsts<>+88(SB)/4, $0xb77460cd // b0 = -1.45660718464996e-05
DATA mathConsts<>+92(SB)/4, $0xb95fbd29 // b1 = -0.000213374055278905
DATA mathConsts<>+96(SB)/4, $0xbadc924e // b2 = -0.00168282697438203
DATA mathConsts<>+100(SB)/4, $0xbbf19bf8 // b3 = -0.00737332916720468
DATA mathConsts<>+104(SB)/4, $0xbc69b6a7 // b4 = -0.0142647390514189
DATA mathConsts<>+108(SB)/4, $127 // bias
GLOBL mathConsts<>(SB), RODATA|NOPTR, $112

// func avxExpf(dst, x *float32, n int) (done int)
//
// expf (kernel_math.go) on blocks of 8 elements, n a multiple of 8, with the same float32
// operations in the same order. It stops before the first block that has an element outside
// (-87, 88) or a NaN (expf's float64 fallback) and returns how many elements it did.
TEXT ·avxExpf(SB), NOSPLIT, $0-32
	MOVQ dst+0(FP), DI
	MOVQ x+8(FP), SI
	MOVQ n+16(FP), CX
	XORQ BX, BX
	VBROADCASTSS mathConsts<>+0(SB), Y8
	VBROADCASTSS mathConsts<>+4(SB), Y9
	VBROADCASTSS mathConsts<>+8(SB), Y10
	VBROADCASTSS mathConsts<>+12(SB), Y11
	VBROADCASTSS mathConsts<>+16(SB), Y12
	VBROADCASTSS mathConsts<>+20(SB), Y13
	VBROADCASTSS mathConsts<>+48(SB), Y14
	VPBROADCASTD mathConsts<>+108(SB), Y15
loop:
	CMPQ      BX, CX
	JGE       done
	VMOVUPS   (SI)(BX*4), Y0
	VCMPPS    $0x1e, Y8, Y0, Y1 // x > -87
	VCMPPS    $0x11, Y9, Y0, Y2 // x < 88
	VANDPS    Y1, Y2, Y1
	VMOVMSKPS Y1, AX
	CMPL      AX, $0xff
	JNE       done
	VMULPS    Y10, Y0, Y1 // t = x*log2e + 0.5
	VADDPS    Y11, Y1, Y1
	VCVTTPS2DQ Y1, Y2     // n = int32(t)
	VCVTDQ2PS Y2, Y3
	VCMPPS    $0x1e, Y1, Y3, Y4 // float32(n) > t: n--
	VPADDD    Y4, Y2, Y2
	VCVTDQ2PS Y2, Y3      // fn
	VMULPS    Y12, Y3, Y5 // r = x - fn*c1
	VSUBPS    Y5, Y0, Y5
	VMULPS    Y13, Y3, Y6 // r -= fn*c2
	VSUBPS    Y6, Y5, Y5
	VBROADCASTSS mathConsts<>+24(SB), Y7
	VMULPS    Y5, Y7, Y7
	VBROADCASTSS mathConsts<>+28(SB), Y6
	VADDPS    Y6, Y7, Y7
	VMULPS    Y5, Y7, Y7
	VBROADCASTSS mathConsts<>+32(SB), Y6
	VADDPS    Y6, Y7, Y7
	VMULPS    Y5, Y7, Y7
	VBROADCASTSS mathConsts<>+36(SB), Y6
	VADDPS    Y6, Y7, Y7
	VMULPS    Y5, Y7, Y7
	VBROADCASTSS mathConsts<>+40(SB), Y6
	VADDPS    Y6, Y7, Y7
	VMULPS    Y5, Y7, Y7
	VBROADCASTSS mathConsts<>+44(SB), Y6
	VADDPS    Y6, Y7, Y7
	VMULPS    Y5, Y7, Y7 // y = y*r*r + r + 1
	VMULPS    Y5, Y7, Y7
	VADDPS    Y5, Y7, Y7
	VADDPS    Y14, Y7, Y7
	VPADDD    Y15, Y2, Y2 // 2**n
	VPSLLD    $23, Y2, Y2
	VMULPS    Y2, Y7, Y7
	VMOVUPS   Y7, (DI)(BX*4)
	ADDQ      $8, BX
	JMP       loop
done:
	MOVQ BX, done+24(FP)
	VZEROUPPER
	RET

// func avxErff(dst, x *float32, n int) (done int)
//
// erff (kernel_math.go) on blocks of 8 elements, n a multiple of 8, with the same float32
// operations in the same order. It stops before the first block that has a NaN and returns how
// many elements it did.
TEXT ·avxErff(SB), NOSPLIT, $0-32
	MOVQ dst+0(FP), DI
	MOVQ x+8(FP), SI
	MOVQ n+16(FP), CX
	XORQ BX, BX
	VBROADCASTSS mathConsts<>+52(SB), Y8
	VBROADCASTSS mathConsts<>+56(SB), Y9
loop:
	CMPQ      BX, CX
	JGE       done
	VMOVUPS   (SI)(BX*4), Y0
	VCMPPS    $0x03, Y0, Y0, Y1 // NaN
	VMOVMSKPS Y1, AX
	TESTL     AX, AX
	JNZ       done
	VMAXPS    Y8, Y0, Y0 // x = min(max(x, -4), 4)
	VMINPS    Y9, Y0, Y0
	VMULPS    Y0, Y0, Y1 // x2
	VBROADCASTSS mathConsts<>+60(SB), Y2
	VMULPS    Y1, Y2, Y2
	VBROADCASTSS mathConsts<>+64(SB), Y3
	VADDPS    Y3, Y2, Y2
	VMULPS    Y1, Y2, Y2
	VBROADCASTSS mathConsts<>+68(SB), Y3
	VADDPS    Y3, Y2, Y2
	VMULPS    Y1, Y2, Y2
	VBROADCASTSS mathConsts<>+72(SB), Y3
	VADDPS    Y3, Y2, Y2
	VMULPS    Y1, Y2, Y2
	VBROADCASTSS mathConsts<>+76(SB), Y3
	VADDPS    Y3, Y2, Y2
	VMULPS    Y1, Y2, Y2
	VBROADCASTSS mathConsts<>+80(SB), Y3
	VADDPS    Y3, Y2, Y2
	VMULPS    Y1, Y2, Y2
	VBROADCASTSS mathConsts<>+84(SB), Y3
	VADDPS    Y3, Y2, Y2
	VMULPS    Y0, Y2, Y2 // p *= x
	VBROADCASTSS mathConsts<>+88(SB), Y4
	VMULPS    Y1, Y4, Y4
	VBROADCASTSS mathConsts<>+92(SB), Y3
	VADDPS    Y3, Y4, Y4
	VMULPS    Y1, Y4, Y4
	VBROADCASTSS mathConsts<>+96(SB), Y3
	VADDPS    Y3, Y4, Y4
	VMULPS    Y1, Y4, Y4
	VBROADCASTSS mathConsts<>+100(SB), Y3
	VADDPS    Y3, Y4, Y4
	VMULPS    Y1, Y4, Y4
	VBROADCASTSS mathConsts<>+104(SB), Y3
	VADDPS    Y3, Y4, Y4
	VDIVPS    Y4, Y2, Y2 // p / q
	VMOVUPS   Y2, (DI)(BX*4)
	ADDQ      $8, BX
	JMP       loop
done:
	MOVQ BX, done+24(FP)
	VZEROUPPER
	RET
