package detect

// Reads are the statements Poll reads with, by name, for the EXPLAIN test;
// each takes the race, the poll, the widest window in minutes and the
// span's start (the entrants only the first three).
func Reads() map[string]string {
	return map[string]string{"entrants": sqlEntrants, "polls": sqlPolls, "money": sqlMoney, "prices": sqlPrices}
}
