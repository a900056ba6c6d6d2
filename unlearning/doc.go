// Package unlearning is the S3T core: pure bookkeeping with no I/O.
//
// It provides the keyed, balanced assignment of sample ids to (shard, slice) units
// ([Assigner]), the sequence selectors that choose the slice orders a shard is trained under
// ([Cyclic], [BMS], [Random], all implementing [sdk.Selector]), the live-prefix state of a
// shard with deletion planning and the choice of the served prefix ([Shard]), the
// aggregation of shard outputs ([Aggregate]), and the deletion-rate theory: the closed forms
// of METHOD.md and a Monte-Carlo simulator that runs the same [Shard] logic ([Simulate],
// [Retention]).
//
// Slices are numbered 0..L-1. A sequence is a permutation of the slices; its prefix of
// length i is the set of slices checkpoint C[shard, sequence, i] was trained on.
package unlearning
