package handlers

// Kinds of stage failure: the bounded names poll results, the poison queue
// and metric labels carry (ErrorKind). Failures lists which stage reports
// which, so that counters can exist before the first failure.
const (
	// KindCompress: the fetched body could not be compressed.
	KindCompress = "compress"
	// KindNotFound: the API does not know the race (a skip).
	KindNotFound = "not_found"
	// KindUnreachable: the API could not be reached or kept failing
	// transiently (a skip; the next poll is the retry).
	KindUnreachable = "unreachable"
	// KindInvalidResponse: the API answered with something not usable.
	KindInvalidResponse = "invalid_response"
	// KindValidation: a payload (or a race id) breaks a rule.
	KindValidation = "validation"
	// KindMalformedJSON: the body is not the JSON the API sends.
	KindMalformedJSON = "malformed_json"
	// KindMetadata: a message lacks metadata its stage needs.
	KindMetadata = "metadata"
	// KindDecompress: a stored body could not be decompressed.
	KindDecompress = "decompress"
	// KindDecode: a payload could not be decoded.
	KindDecode = "decode"
	// KindTransform: the transform refused the event.
	KindTransform = "transform"
	// KindBegin: the write's transaction could not begin.
	KindBegin = "begin"
	// KindCommit: the write's transaction could not commit.
	KindCommit = "commit"
	// KindDatabase: a statement of the write failed.
	KindDatabase = "database"
	// KindPartitionMissing: a history row's day has no partition.
	KindPartitionMissing = "partition_missing"
	// KindRead: the detect stage could not read a race's stored polls.
	KindRead = "read"
	// KindStore: the detect stage could not store the alerts it fired.
	KindStore = "store"
	// KindPublish: an output could not be published.
	KindPublish = "publish"
	// KindEncode: an output could not be encoded.
	KindEncode = "encode"
)

// Failure is a kind of failure a stage reports and the status its poll
// ends with.
type Failure struct {
	Stage, Kind, Status string
	// Retried says the error is transient and retried before it counts.
	Retried bool
}

// Failures lists every failure the stages report by name. Kinds not listed
// (panic, internal, canceled) are not known in advance.
func Failures() []Failure {
	return []Failure{
		{StageFetch, KindNotFound, StatusSkipped, false},
		{StageFetch, KindUnreachable, StatusSkipped, false},
		{StageFetch, KindInvalidResponse, StatusFailed, false},
		{StageFetch, KindValidation, StatusFailed, false},
		{StageFetch, KindMalformedJSON, StatusFailed, false},
		{StageFetch, KindCompress, StatusFailed, false},
		{StageTransform, KindMetadata, StatusFailed, false},
		{StageTransform, KindDecompress, StatusFailed, false},
		{StageTransform, KindDecode, StatusFailed, false},
		{StageTransform, KindTransform, StatusFailed, false},
		{StageWrite, KindBegin, StatusFailed, true},
		{StageWrite, KindCommit, StatusFailed, true},
		{StageWrite, KindDatabase, StatusFailed, true},
		{StageWrite, KindPartitionMissing, StatusFailed, false},
		{StageDetect, KindDecode, StatusFailed, false},
		{StageDetect, KindMetadata, StatusFailed, false},
		{StageDetect, KindBegin, StatusFailed, true},
		{StageDetect, KindRead, StatusFailed, true},
		{StageDetect, KindStore, StatusFailed, true},
		{StageDetect, KindDatabase, StatusFailed, true},
		{StageDetect, KindCommit, StatusFailed, true},
		{StageDetect, KindPublish, StatusFailed, true},
		{StageDetect, KindEncode, StatusFailed, false},
	}
}
