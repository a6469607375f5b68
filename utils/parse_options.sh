#!/usr/bin/env bash
# parse_options.sh — command-line options for recipe scripts (sourced, like Kaldi's).
#
# Usage, inside run.sh after the defaults:
#     stage=1
#     stop_stage=100
#     use_gpu=false
#     help_message="Usage: $0 [options] <data-dir>"   # optional, shown by --help
#     . utils/parse_options.sh
#     # "$@" now holds only the positional arguments
#
# Then:  ./run.sh --stage 3 --stop-stage 6      (--stop_stage 6 and --stop-stage=6 work too)
#        ./run.sh --use-gpu true                (a variable whose default is true|false only
#                                                accepts true|false)
#        ./run.sh --config conf/my.sh           (a file of name=value lines, sourced before the
#                                                other options, so the command line wins)
#        ./run.sh --help                        (usage + the known options and current values)
#
# Known options are the top-level variables assigned in the calling script before it sources
# this file (and in files it sources before that, e.g. cmd.sh). An unknown option is an error
# that lists the known ones. --help lists the calling script's own options only: the variables
# of sourced files (path.sh, cmd.sh) are accepted too, but they are the environment, not the
# recipe's settings. Parsing stops at the first argument that is not an option, or '--'.
# Works under `set -euo pipefail`.

if [ -z "${BASH_VERSION:-}" ]; then
  echo "parse_options.sh: must be sourced from bash" >&2
  exit 1
fi

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  # Run directly rather than sourced: show this file's documentation.
  sed -n '2,/^$/s/^# \{0,1\}//p' "$0"
  case "${1:-}" in -h|--help) exit 0 ;; *) echo "(source this file from a script: . utils/parse_options.sh)" >&2; exit 1 ;; esac
fi

_po_caller="${BASH_SOURCE[1]:-$0}"
_po_prog="$(basename -- "$0")"

# Print the top-level `name=` assignments of a script up to the line that sources us, and
# "SOURCE <file>" for files it sources before that.
_po_assignments() {
  awk '
    /(^|[;&| \t])(\.|source)[ \t]+[^ \t]*parse_options\.sh/ { exit }
    /^(\.|source)[ \t]+[^ \t]+/ { f = $2; gsub(/["'"'"']/, "", f); print "SOURCE " f; next }
    {
      line = $0
      sub(/^(export|readonly|declare([ \t]+-[A-Za-z]+)?)[ \t]+/, "", line)
      if (line ~ /^[A-Za-z_][A-Za-z0-9_]*=/) { sub(/=.*/, "", line); print line }
    }' "$1"
}

_po_known=()
_po_own=()  # assigned in the calling script itself: what --help lists
# Locals of these functions are _po_-prefixed: a plain `local name` would shadow a recipe
# variable of the same name, so `--name x` would set the local and be lost.
_po_add_known() {  # _po_add_known NAME [own]
  local _po_k
  [ "$1" = "help_message" ] && return 0
  if [ "${2:-}" = own ]; then
    for _po_k in ${_po_own[@]+"${_po_own[@]}"}; do [ "$_po_k" = "$1" ] && break; done
    [ "${_po_k:-}" = "$1" ] || _po_own+=("$1")
  fi
  for _po_k in ${_po_known[@]+"${_po_known[@]}"}; do [ "$_po_k" = "$1" ] && return 0; done
  _po_known+=("$1")
}
if [ -f "$_po_caller" ]; then
  while IFS= read -r _po_line; do
    case "$_po_line" in
      "SOURCE "*)
        _po_src="${_po_line#SOURCE }"
        if [ -f "$_po_src" ] && ! [[ "$_po_src" == *parse_options.sh ]]; then
          while IFS= read -r _po_n; do
            case "$_po_n" in SOURCE*) ;; *) _po_add_known "$_po_n" ;; esac
          done < <(_po_assignments "$_po_src")
        fi ;;
      *) _po_add_known "$_po_line" own ;;
    esac
  done < <(_po_assignments "$_po_caller")
fi

_po_is_known() {
  local _po_k
  for _po_k in ${_po_known[@]+"${_po_known[@]}"}; do [ "$_po_k" = "$1" ] && return 0; done
  # Caller not readable as a file (e.g. bash -c): fall back to Kaldi's rule, "the variable is set".
  if [ ${#_po_known[@]} -eq 0 ] && declare -p "$1" >/dev/null 2>&1; then return 0; fi
  return 1
}

_po_list_known() {  # _po_list_known [own]: every known option, or the calling script's own
  local _po_k _po_names=()
  if [ "${1:-}" = own ]; then _po_names=(${_po_own[@]+"${_po_own[@]}"}); else _po_names=(${_po_known[@]+"${_po_known[@]}"}); fi
  for _po_k in ${_po_names[@]+"${_po_names[@]}"}; do
    printf '  --%-24s %s\n' "${_po_k//_/-}" "${!_po_k-}"
  done
}

_po_die() {
  echo "$_po_prog: $1" >&2
  if [ "${2:-}" = "list" ]; then
    echo "known options (dashes or underscores; current values):" >&2
    _po_list_known >&2
  fi
  exit 1
}

_po_set() {  # _po_set <option-name-as-typed> <value>
  local _po_name="${1//-/_}"
  [[ "$_po_name" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || _po_die "invalid option name --$1" list
  [[ "$_po_name" != _po_* ]] || _po_die "invalid option name --$1 (_po_ names are parse_options.sh's own)" list
  _po_is_known "$_po_name" || _po_die "unknown option --$1" list
  local _po_old="${!_po_name-}"
  if [ "$_po_old" = "true" ] || [ "$_po_old" = "false" ]; then
    if [ "$2" != "true" ] && [ "$2" != "false" ]; then
      _po_die "option --$1 is a boolean: expected true or false, got '$2'"
    fi
  fi
  printf -v "$_po_name" '%s' "$2"
}

# Pass 1: --config files, so that options given on the command line override them.
_po_i=1
while [ "$_po_i" -le $# ]; do
  _po_arg="${!_po_i}"
  _po_cfg=""
  if [ "$_po_arg" = "--config" ]; then
    _po_j=$((_po_i + 1))
    [ "$_po_j" -le $# ] || _po_die "option --config needs a file"
    _po_cfg="${!_po_j}"
    _po_i=$_po_j
  elif [[ "$_po_arg" == --config=* ]]; then
    _po_cfg="${_po_arg#--config=}"
  elif [ "$_po_arg" = "--" ] || [[ "$_po_arg" != --* ]]; then
    break
  elif [[ "$_po_arg" != *=* ]] && [ "$_po_arg" != "--help" ]; then
    _po_i=$((_po_i + 1))  # skip the option's value
  fi
  if [ -n "$_po_cfg" ]; then
    [ -f "$_po_cfg" ] || _po_die "config file '$_po_cfg' does not exist"
    _po_lineno=0
    while IFS= read -r _po_cline || [ -n "$_po_cline" ]; do
      _po_lineno=$((_po_lineno + 1))
      [[ "$_po_cline" =~ ^[[:space:]]*(#.*)?$ ]] && continue
      if [[ "$_po_cline" =~ ^[[:space:]]*([A-Za-z_][A-Za-z0-9_]*)= ]]; then
        _po_n="${BASH_REMATCH[1]}"
        _po_is_known "$_po_n" || _po_die "$_po_cfg:$_po_lineno: unknown variable '$_po_n'" list
      else
        _po_die "$_po_cfg:$_po_lineno: expected name=value, got '$_po_cline'"
      fi
    done < "$_po_cfg"
    # shellcheck disable=SC1090
    . "$_po_cfg"
  fi
  _po_i=$((_po_i + 1))
done

# Pass 2: the options themselves.
while [ $# -gt 0 ]; do
  case "$1" in
    --help|-h)
      if [ -n "${help_message:-}" ]; then
        printf '%s\n' "$help_message"
      else
        echo "Usage: $_po_prog [options] [args]"
      fi
      echo "Options (dashes or underscores; current values):"
      _po_list_known own
      printf '  --%-24s %s\n' "config <file>" "source a file of name=value lines first" \
        "help" "show this message"
      exit 0 ;;
    --) shift; break ;;
    --config) shift 2 ;;
    --config=*) shift ;;
    --*=*)
      _po_opt="${1%%=*}"
      _po_set "${_po_opt#--}" "${1#*=}"
      shift ;;
    --*)
      [ $# -ge 2 ] || _po_die "option $1 needs a value"
      _po_set "${1#--}" "$2"
      shift 2 ;;
    *) break ;;
  esac
done

unset _po_caller _po_prog _po_known _po_own _po_line _po_src _po_n _po_i _po_j _po_arg _po_cfg _po_cline \
  _po_lineno _po_opt
unset -f _po_assignments _po_add_known _po_is_known _po_list_known _po_die _po_set
true
