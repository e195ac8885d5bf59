package unit

import "strings"

// Nearest gives the candidate closest to s by edit distance (case-insensitive), if it is near
// enough to be a likely typo: at most a third of the candidate's length, and at least 2.
func Nearest(s string, candidates []string) (string, bool) {
	if len(s) > 64 {
		return "", false // no key is that long; spare the quadratic distance
	}
	best, bestD := "", -1
	for _, c := range candidates {
		d := editDistance(strings.ToLower(s), strings.ToLower(c))
		if bestD < 0 || d < bestD {
			best, bestD = c, d
		}
	}
	if bestD < 0 {
		return "", false
	}
	limit := len(best) / 3
	if limit < 2 {
		limit = 2
	}
	return best, bestD <= limit
}

// editDistance is the Levenshtein distance between a and b, in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
