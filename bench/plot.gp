# Chart for bench/compare: grouped bars per mode for portcullis, nginx and
# HAProxy. Called as
#   gnuplot -e "datafile='x.dat'; outfile='x.svg'; charttitle='...'; has_idle=1" bench/plot.gp
# datafile: blocks separated by two blank lines, each row `"mode" portcullis nginx haproxy`:
#   index 0: server CPU microseconds per operation, index 1: requests/s,
#   index 2: KiB of server memory per idle connection (one row).
if (!exists("datafile")) datafile = 'chart.dat'
if (!exists("outfile")) outfile = 'chart.svg'
if (!exists("charttitle")) charttitle = 'portcullis vs nginx vs HAProxy'
if (!exists("has_idle")) has_idle = 1
# y ranges of the two log-scale panels (bench/compare passes them: the data's
# min/max with room for the labels and the key)
if (!exists("cpu_lo")) cpu_lo = 10
if (!exists("cpu_hi")) cpu_hi = 10000
if (!exists("rps_lo")) rps_lo = 100
if (!exists("rps_hi")) rps_hi = 300000

set terminal svg size 960, (has_idle ? 1080 : 760) dynamic enhanced font 'sans,11' background '#ffffff'
set output outfile

set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9 relative
set key top right horizontal
set grid ytics lc rgb '#dddddd'
set xtics nomirror scale 0
set ytics nomirror
set border 3
set logscale y 10
set format y '%g'

c1 = '#2b6cb0'   # portcullis
c2 = '#38a169'   # nginx
c3 = '#dd6b20'   # HAProxy
# bar centres with 3 bars per group and gap 1: x - 0.25, x, x + 0.25
lbl(v, f) = (v == v) ? sprintf(f, v) : 'n/a'
# compact numbers for the throughput labels: 950, 1.5k, 34.2k
klbl(v) = (v != v) ? 'n/a' : (v >= 1000 ? sprintf('%.1fk', v / 1000.0) : sprintf('%.0f', v))

if (has_idle) {
    set multiplot layout 3, 1 title charttitle font 'sans,13'
} else {
    set multiplot layout 2, 1 title charttitle font 'sans,13'
}

set title 'server CPU per operation, µs (lower is better; log scale)'
set ylabel 'µs / request'
set yrange [cpu_lo:cpu_hi]
plot datafile index 0 using 2:xtic(1) title 'portcullis' lc rgb c1, \
     ''       index 0 using 3 title 'nginx' lc rgb c2, \
     ''       index 0 using 4 title 'HAProxy' lc rgb c3, \
     ''       index 0 using ($0 - 0.25):2:(lbl($2, '%.0f')) with labels offset 0, 0.6 font 'sans,9' notitle, \
     ''       index 0 using ($0):3:(lbl($3, '%.0f')) with labels offset 0, 0.6 font 'sans,9' notitle, \
     ''       index 0 using ($0 + 0.25):4:(lbl($4, '%.0f')) with labels offset 0, 0.6 font 'sans,9' notitle

set title 'throughput, requests/s (higher is better; log scale)'
set ylabel 'requests / s'
set yrange [rps_lo:rps_hi]
plot datafile index 1 using 2:xtic(1) title 'portcullis' lc rgb c1, \
     ''       index 1 using 3 title 'nginx' lc rgb c2, \
     ''       index 1 using 4 title 'HAProxy' lc rgb c3, \
     ''       index 1 using ($0 - 0.25):2:(klbl($2)) with labels offset 0, 0.6 font 'sans,9' notitle, \
     ''       index 1 using ($0):3:(klbl($3)) with labels offset 0, 0.6 font 'sans,9' notitle, \
     ''       index 1 using ($0 + 0.25):4:(klbl($4)) with labels offset 0, 0.6 font 'sans,9' notitle

if (has_idle) {
    unset logscale y
    set yrange [0:*]
    set xrange [-1.5:1.5]
    set offsets 0, 0, graph 0.2, 0
    set title 'server memory per idle mTLS connection, KiB (Pss; lower is better)'
    set ylabel 'KiB / connection'
    plot datafile index 2 using 2:xtic(1) title 'portcullis' lc rgb c1, \
         ''       index 2 using 3 title 'nginx' lc rgb c2, \
         ''       index 2 using 4 title 'HAProxy' lc rgb c3, \
         ''       index 2 using ($0 - 0.25):2:(lbl($2, '%.1f')) with labels offset 0, 0.6 font 'sans,9' notitle, \
         ''       index 2 using ($0):3:(lbl($3, '%.1f')) with labels offset 0, 0.6 font 'sans,9' notitle, \
         ''       index 2 using ($0 + 0.25):4:(lbl($4, '%.1f')) with labels offset 0, 0.6 font 'sans,9' notitle
}
unset multiplot
