package main

// cpusFromMask turns affinity mask words (bit i of word w is CPU 64*w+i) into
// an ascending list of CPU numbers.
func cpusFromMask(words []uint64) []int {
	cpus := []int{}
	for w, word := range words {
		for bit := 0; bit < 64; bit++ {
			if word&(1<<uint(bit)) != 0 {
				cpus = append(cpus, 64*w+bit)
			}
		}
	}
	return cpus
}
