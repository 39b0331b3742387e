// A file with no sbp.model.
module {
}
