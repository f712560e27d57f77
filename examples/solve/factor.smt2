; Factor 2465665963 into two 18-bit numbers greater than 1: Boolector
; bit-blasts the multiplication and searches (about 8 Gfuel, a second or two).
(set-logic QF_BV)
(declare-fun a () (_ BitVec 18))
(declare-fun b () (_ BitVec 18))
(assert (= (bvmul ((_ zero_extend 18) a) ((_ zero_extend 18) b)) (_ bv2465665963 36)))
(assert (bvugt a (_ bv1 18)))
(assert (bvugt b (_ bv1 18)))
(assert (bvule a b))
(check-sat)
(exit)
