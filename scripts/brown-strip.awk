# scripts/brown-strip.awk: turns the Brown corpus's tagged text (form C)
# into plain text. Used by scripts/fetch-brown; portable awk (POSIX).
#
# The input format: one sentence per line, indented by a tab, sentences
# separated by blank lines; each token is word/tag, the tag after the last
# slash (a word may hold slashes itself: 1-1/2/cd), such as The/at
# Fulton/np-tl said/vbd ./. and ``/`` for an opening quote, ''/'' for a
# closing one. The output: one sentence per line, the words joined by one
# space, `` and '' turned into ", and punctuation put back against its
# word (no space before . , ; : ? ! ) or a closing quote, none after ( or
# an opening quote). One blank line separates the input files, so
# documents stay apart when files are concatenated.
function flush() {
  if (out != "") print out
  out = ""
}
FNR == 1 && NR != 1 { flush(); print "" }
/^[ \t]*$/ { flush(); next }
{
  glue = 1 # no space before the first word
  for (i = 1; i <= NF; i++) {
    tok = $i
    cut = 0
    for (j = length(tok); j > 0; j--)
      if (substr(tok, j, 1) == "/") { cut = j; break }
    w = cut > 0 ? substr(tok, 1, cut - 1) : tok
    if (w == "") continue
    opener = 0
    if (w == "``") { w = "\""; opener = 1 }
    else if (w == "''") w = "\""
    else if (w == "(") opener = 1
    closer = $i ~ /^(\.|,|;|:|\?|!|\)|'')\//
    if (out != "" && !glue && !closer) out = out " "
    out = out w
    glue = opener
  }
  flush()
}
END { flush() }
